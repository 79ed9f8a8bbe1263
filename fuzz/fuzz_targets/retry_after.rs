//! An upstream's `Retry-After`: never more than a day.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::retry_after(data));
