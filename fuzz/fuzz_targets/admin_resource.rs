//! Admin API resource bodies (routes, services, upstreams, consumers,
//! credentials, global rules, plugin metadata) through the Admin API's own
//! validation: no panic, a known status, a refusal naming a field, and
//! what was taken reads back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::admin_resource(data));
