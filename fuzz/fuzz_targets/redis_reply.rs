//! A Redis server's reply: parsing never panics and never claims more
//! bytes than it was given.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::redis_reply(data));
