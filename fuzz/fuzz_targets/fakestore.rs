//! Fuzz target: `ecom_pipeline::fuzzing::fakestore` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecom_pipeline::fuzzing::fakestore(data);
});
