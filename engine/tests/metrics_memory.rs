#![allow(unsafe_code)]
//! What 10,000 label sets cost a worker (the default
//! `gateway.metrics.max_label_sets`): the bytes allocated, counted by a
//! global allocator wrapping the system's, while one worker's series
//! table records 10,000 distinct label sets of AI requests (the larger
//! kind: they carry the LLM histograms) and publishes them. Prints the
//! figure (results/instructions-per-request.md quotes it) and fails if it
//! grows past a bound well above it.
//!
//! Run alone: `cargo test -p ringway --test metrics_memory -- --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringway::exchange::ctx::RequestType;
use ringway::observe::metrics::labels::{RouteFacts, RouteLabels};
use ringway::observe::metrics::series::Sample;
use ringway::observe::metrics::table::{Labelled, Node, Observation, SeriesTable};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn ten_thousand_label_sets_cost_about_a_kilobyte_each() {
    const SETS: usize = 10_000;
    // 100 routes × 100 consumers, as a configuration would hold them.
    let routes: Vec<Arc<RouteLabels>> = (0..100)
        .map(|i| {
            Arc::new(RouteLabels::new(
                &RouteFacts {
                    id: format!("route-{i}"),
                    uri: format!("/v1/tenant-{i}/chat/completions"),
                    service_id: Some("svc".into()),
                    ..Default::default()
                },
                false,
            ))
        })
        .collect();
    let consumers: Vec<Arc<str>> = (0..100)
        .map(|i| Arc::from(format!("consumer-{i}")))
        .collect();
    let node: Arc<str> = Arc::from("openai-instance");
    let sample = Sample {
        request: Duration::from_millis(120),
        upstream: Some(Duration::from_millis(100)),
        ingress: 500,
        egress: 900,
        llm_latency: Some(Duration::from_millis(100)),
        prompt_tokens: 20,
        completion_tokens: 40,
        ..Default::default()
    };
    let shared = Arc::new(Labelled::default());
    let before = LIVE.load(Ordering::Relaxed);
    let mut table = SeriesTable::new(SETS, shared.clone());
    for r in &routes {
        for c in &consumers {
            table.record(
                &Observation {
                    route: Some(r),
                    consumer: Some(c),
                    node: Node::Instance(&node),
                    request_model: Some("gpt-4o"),
                    model: Some("gpt-4o-2024-08-06"),
                    request_type: RequestType::AiChat,
                    code: 200,
                },
                &sample,
            );
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(table.len(), SETS);
    assert_eq!(shared.series.len(), SETS);
    println!(
        "{SETS} label sets (AI requests): {bytes} bytes allocated, {} bytes per label set",
        bytes / SETS as isize
    );
    assert!(
        bytes < 24 << 20,
        "10,000 label sets took {bytes} bytes, past the 24 MiB bound"
    );
}
