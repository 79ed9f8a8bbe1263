//! A large body converted between API formats cannot take the machine's
//! memory: one whose conversion would need more than the budget (a body
//! of many tiny objects: 25-40 times its size) is refused with 413 before
//! any tree is built, while a large body of plain text converts.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::ai::{ai_config, mocks};
use common::{Conn, Gateway};
use serde_json::json;

/// The gateway's peak resident memory (VmHWM), in MiB.
fn peak_mib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb >> 10
}

#[test]
fn a_body_too_complex_to_convert_is_413_and_memory_stays_bounded() {
    let m = mocks(&["claude"]);
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [{
            "name": "claude", "provider": "anthropic", "weight": 1,
            "auth": {"header": {"x-api-key": "k"}}, "options": {"model": "claude-x"},
            "override": {"endpoint": format!("{}/v1/messages", m.instance("claude").url())},
        }]}),
    ));
    // 16 MiB of tiny content parts: converting it took ~1.3 GB.
    let parts = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":[{}{{\"type\":\"text\",\"text\":\"hi\"}}]}}]}}",
        r#"{"type":"text","text":""},"#.repeat(16 << 20 >> 5 << 1)
    );
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", &parts);
    assert_eq!(r.status, 413, "{}", r.text());
    let msg = r.json()["error_msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("too complex to convert") && msg.contains("claude"),
        "{msg}"
    );
    assert_eq!(m.instance("claude").stats().requests, 0);
    // 16 MiB of text converts (and answers).
    let text = json!({"messages": [{"role": "user", "content": "a".repeat(16 << 20)}]}).to_string();
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", &text);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(m.instance("claude").stats().requests, 1);
    let peak = peak_mib(&gw);
    assert!(peak < 512, "peak resident memory {peak} MiB");
}
