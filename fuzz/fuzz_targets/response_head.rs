//! An upstream's response head: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::ResponseHead;

fuzz_target!(|data: &[u8]| {
    let head_request = data.first().is_some_and(|b| b & 1 == 1);
    let _ = ResponseHead::parse(
        bytes::Bytes::copy_from_slice(data),
        head_request,
        100,
        Vec::new(),
    );
});
