//! Every request template against mock-llm, streamed: all requests
//! succeed and every token is seen (time to first token once per request,
//! an inter-token gap for each later token), whatever the stream format.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use loadgen::run::{run, Mode, RunSpec};
use loadgen::workload::{Template, Url, Workload};
use mock_llm::{InstanceConfig, MockServer};

#[test]
fn every_template_streams_and_counts_its_tokens() {
    const TOKENS: u64 = 5;
    const REQUESTS: u64 = 20;
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("m")
                .tokens(TOKENS as u32)
                .itl(Duration::from_millis(1)),
        )
        .spawn()
        .unwrap();
    for template in [Template::Chat, Template::Anthropic, Template::Responses] {
        let workload = Workload {
            template,
            stream: true,
            ..Workload::default()
        };
        let url = Url::parse(&format!(
            "{}{}",
            m.instance("m").url(),
            workload.default_path()
        ))
        .unwrap();
        let result = run(&RunSpec {
            addr: url.addr,
            request: workload.request(&url),
            mode: Mode::Closed { concurrency: 2 },
            duration: Duration::from_secs(30),
            requests: Some(REQUESTS),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
            progress: false,
            label: format!("{template:?}"),
        })
        .unwrap();
        let s = &result.stats;
        assert!(s.errors.is_empty(), "{template:?}: {:?}", s.errors);
        assert!(s.ok >= REQUESTS, "{template:?}: {} ok", s.ok);
        assert_eq!(
            s.ttft.len(),
            s.ok,
            "{template:?}: one first token per answer"
        );
        assert_eq!(
            s.itl.len(),
            s.ok * (TOKENS - 1),
            "{template:?}: every later token"
        );
    }
}
