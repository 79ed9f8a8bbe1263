//! An upstream's response head: parsing never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::response_head(data));
