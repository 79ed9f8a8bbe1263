//! Helpers of the logger tests: a log endpoint answering with a status,
//! an AI route with a logger, asking through it, and waiting for posts.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ai::{ai_config, chat_url, instance, ASK};
use super::upstream::Recorded;
use super::{Conn, Gateway, Upstream};

pub fn answering(status: u16) -> Upstream {
    Upstream::start(move |_, s| {
        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        true
    })
}

pub fn logged_route(m: &mock_llm::MockServer, logger: Value) -> Value {
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4")],
               "logging": {"summaries": true}}),
    );
    doc["services"][0]["routes"][0]["plugins"]["http-logger"] = logger;
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    doc
}

pub fn posts(up: &Upstream, n: usize) -> Vec<Recorded> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = up.requests();
        if r.len() >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn ask(gw: &Gateway, n: usize) {
    let mut c = Conn::connect(gw.addr);
    for _ in 0..n {
        let r = c.post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
