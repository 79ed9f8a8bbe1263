//! A client's request head: parsing never panics, and a parsed head's
//! accessors stay inside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::{HeadLimits, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Ok(head) = RequestHead::parse(
        bytes::Bytes::copy_from_slice(data),
        &HeadLimits::default(),
        Vec::new(),
    ) else {
        return;
    };
    let _ = (head.path(), head.target(), head.query(), head.host());
    let _ = (head.host_with_port(), head.has_body());
    for (n, v) in head.header_pairs() {
        assert!(n.len() + v.len() <= data.len());
        let _ = head.header(std::str::from_utf8(n).unwrap_or("x"));
    }
});
