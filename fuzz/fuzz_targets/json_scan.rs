//! The validating JSON scanner: on UTF-8 input it accepts exactly the
//! top-level objects `serde_json` accepts, and a string found by path is
//! what a full parse finds there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::providers::body::TopLevel;
use ringway::providers::json_scan::{string_at, Step};

const PATH: &[Step] = &[Step::Key("choices"), Step::First, Step::Key("delta"), Step::Key("content")];

fuzz_target!(|data: &[u8]| {
    let scanned = TopLevel::scan(data);
    let found = string_at(data, PATH);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = serde_json::from_str::<serde_json::Value>(text);
    let is_object = parsed.as_ref().is_ok_and(serde_json::Value::is_object);
    // serde_json refuses numbers beyond f64 and lone surrogate escapes,
    // which JSON's grammar allows.
    let out_of_range = parsed.as_ref().is_err_and(|e| {
        let e = e.to_string();
        e.contains("number out of range") || e.contains("surrogate")
    });
    if !out_of_range {
        assert_eq!(scanned.is_ok(), is_object, "scan {scanned:?} vs serde {parsed:?}");
    }
    if let Ok(v) = &parsed {
        let by_tree = v
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("delta"))
            .and_then(|d| d.get("content"))
            .and_then(serde_json::Value::as_str);
        // A full parse keeps the last of repeated keys and matches keys
        // written with escapes; the scan takes the first and does not.
        // Compare where neither can happen.
        let once = |k: &str| text.matches(k).count() <= 1;
        if once("\"choices\"") && once("\"delta\"") && once("\"content\"") && !text.contains("\\u") {
            assert_eq!(found.as_deref(), by_tree);
        }
    }
});
