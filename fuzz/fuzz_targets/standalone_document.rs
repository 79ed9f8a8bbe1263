//! API-driven standalone documents (`PUT /apisix/admin/configs`, JSON or
//! YAML) through the Admin API: accepted or refused naming a field or a
//! version, and an accepted one reads back and is taken again unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::standalone_document(data));
