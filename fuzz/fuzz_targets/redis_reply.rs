//! A Redis server's reply: parsing never panics and never claims more
//! bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = ringway::redis::resp::parse(data) {
        assert!(used <= data.len());
    }
});
