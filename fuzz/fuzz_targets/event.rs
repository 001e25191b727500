//! Fuzz target: `ecom_pipeline::fuzzing::event` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecom_pipeline::fuzzing::event(data);
});
