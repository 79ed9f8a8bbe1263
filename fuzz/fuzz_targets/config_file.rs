//! The configuration file (YAML/JSON text → load → compile): no panic, and
//! a refusal names a field path (or a line, for YAML syntax).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::config_file(data));
