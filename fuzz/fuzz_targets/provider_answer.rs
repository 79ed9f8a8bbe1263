//! A provider's non-streamed answer converted between formats: what is
//! built is JSON, the same format passes through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::provider_answer(data));
