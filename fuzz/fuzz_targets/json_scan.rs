//! The validating JSON scanner: it refuses input that is not UTF-8; on
//! UTF-8 input it accepts exactly the
//! top-level objects `serde_json` accepts, and a string found by path is
//! what a full parse finds there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::json_scan(data));
