//! A client's request body: parsing never panics, and whatever the gateway
//! builds from an accepted body for an instance (same format or converted,
//! chat or embeddings, options merged, usage forced or not) is valid JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::client_body(data));
