//! key-auth's percent-decoding of a query key: never longer than its
//! input, and the inverse of percent-encoding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::key_auth_decode(data));
