//! `cost_expr` (ai-rate-limiting): parse within the length and depth
//! bounds or refuse saying where; evaluation never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringway_fuzz::cost_expr(data));
