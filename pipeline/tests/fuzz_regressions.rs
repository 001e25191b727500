//! The fuzz targets' inputs as regression tests: every file of the committed corpus
//! (`fuzz/corpus/<target>/`) and every input a fuzzer ever crashed on (`fuzz/regressions/
//! <target>/`, kept when fixed) goes through the same entry point, which must not panic. The
//! fuzzers themselves run with `bash scripts/fuzz.sh` (nightly, cargo-fuzz).

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() && !path.ends_with(".keep") {
                let data = std::fs::read(&path).unwrap();
                out.push((path, data));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, f: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for (path, data) in inputs {
        // A panic names the input that caused it.
        eprintln!("{target}: {}", path.display());
        f(&data);
    }
}

#[test]
fn event_inputs_never_panic() {
    replay("event", ecom_pipeline::fuzzing::event);
}

#[test]
fn fakestore_inputs_never_panic() {
    replay("fakestore", ecom_pipeline::fuzzing::fakestore);
}

#[test]
fn config_inputs_never_panic() {
    replay("config", ecom_pipeline::fuzzing::config);
}
