//! `_meta.filter` conditions: any JSON compiles or is refused without a
//! panic, evaluation never panics, and `["!AND", r, r]` negates `r`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::condition(data));
