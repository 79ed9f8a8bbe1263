//! Logger sinks: where logger plugins (`kafka-logger`, `http-logger`) send
//! their entries, and where the `opentelemetry` plugin's spans go
//! ([`otlp`]: the same thread and queue, spans for entries).
//!
//! Each sink is one thread with APISIX's batch processor semantics: entries
//! are collected until `batch_max_size` of them are waiting, or
//! `inactive_timeout` passed since the last one, or `buffer_duration` since
//! the oldest; a batch that fails is tried again `max_retry_count` times
//! `retry_delay` apart, then dropped with an error line. A worker collects
//! its entries in a local [`WorkerQueue`] and hands them over at most
//! 100 ms after the first was queued (or 64 at a time; a worker with
//! nothing to log sleeps) with a non-blocking send on a bounded queue, so a
//! request costs a push into a vector, not a wake-up of the logger thread;
//! a slow or unreachable broker never delays a request. Entries handed
//! over and not yet sent (or given up on) are the sink's backlog; past the
//! plugin metadata's `max_pending_entries` (APISIX's default 8192), or
//! past 64 MiB of entries, new ones are dropped and counted, with one
//! error line a second saying so, as APISIX's batch processor does. A sink
//! lives as long as some snapshot's plugin holds it; the last holder gone,
//! it sends what it has and ends. At shutdown the server closes every sink
//! and waits (bounded) until what was queued has been sent. A logger whose
//! settings change gets a new sink but keeps its counts (the metric series
//! does not restart at 0).

pub mod http;
pub mod kafka;
pub mod otlp;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::supervise::{self, fault, Component};

/// Hand-overs (of up to [`SHIP_AT`] entries) waiting for the sink thread.
const QUEUE: usize = 1024;
/// Entry bytes waiting for the sink thread, at most: with payloads an
/// entry can be large, and a broker that is down must not grow memory.
const QUEUE_BYTES: usize = 64 << 20;
/// A worker hands a sink's entries over once this many wait (else at its
/// log-shipping tick, [`crate::observe::access_log::SHIP_EVERY`]).
const SHIP_AT: usize = 64;

/// Entries (JSON documents) handed over at once.
type Entries = Vec<Vec<u8>>;

/// APISIX's batch processor settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchConfig {
    pub max_size: usize,
    pub inactive: Duration,
    pub buffer: Duration,
    pub max_retry: u32,
    pub retry_delay: Duration,
    /// Most entries handed over and not yet sent or given up on
    /// (the plugin metadata's `max_pending_entries`).
    pub max_pending: usize,
}

/// APISIX's default `max_pending_entries` (3.18's batch processor).
pub const DEFAULT_MAX_PENDING: usize = 8192;

/// What a sink did, for tests and metrics.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Bytes handed over and not yet taken by the thread.
    queued_bytes: AtomicUsize,
    /// Entries handed over and not yet sent or given up on: the backlog
    /// `max_pending_entries` bounds. Shared by the sinks a logger had, so
    /// one replaced while it still sends counts until it is done.
    pub pending: AtomicUsize,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The workers' side of a sink thread.
pub struct Sink {
    name: String,
    tx: flume::Sender<Entries>,
    /// Disconnected when the thread has ended.
    done: flume::Receiver<()>,
    pub stats: Arc<SinkStats>,
    max_pending: usize,
    /// The "entries dropped" line, at most once a second.
    drop_warning: crate::observe::throttle::Throttle,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("name", &self.name).finish()
    }
}

impl Sink {
    /// Starts a thread producing batches to Kafka. Nothing connects until
    /// the first batch.
    pub fn kafka(
        name: String,
        cfg: kafka::ProducerConfig,
        batch: BatchConfig,
        stats: Arc<SinkStats>,
    ) -> Arc<Sink> {
        let mut producer = kafka::Producer::new(cfg);
        Sink::start(name, batch, stats, move |b| producer.send(b))
    }

    /// Starts a thread POSTing batches to an HTTP(S) endpoint.
    pub fn http(
        name: String,
        poster: http::HttpPoster,
        batch: BatchConfig,
        stats: Arc<SinkStats>,
    ) -> Arc<Sink> {
        let mut poster = poster;
        Sink::start(name, batch, stats, move |b| poster.send(b))
    }

    /// Starts a thread exporting batches of encoded spans over OTLP/HTTP
    /// (entries are spans here).
    pub fn otlp(
        name: String,
        poster: otlp::OtlpPoster,
        batch: BatchConfig,
        stats: Arc<SinkStats>,
    ) -> Arc<Sink> {
        let mut poster = poster;
        Sink::start(name, batch, stats, move |b| poster.send(b))
    }

    /// `stats` are the logger's counts, carried over from the sink this one
    /// replaces when the logger's settings changed.
    fn start(
        name: String,
        batch: BatchConfig,
        stats: Arc<SinkStats>,
        mut send: impl FnMut(&mut Entries) -> Result<(), String> + Send + 'static,
    ) -> Arc<Sink> {
        let max_pending = batch.max_pending;
        let (tx, rx) = flume::bounded(QUEUE);
        let (done_tx, done) = flume::bounded::<()>(0);
        let thread_stats = stats.clone();
        let thread_name = name.clone();
        let mut done_tx = Some(done_tx);
        // Outlives a run that panics: what was being sent is given up
        // (counted as failed: it may be what made the run panic), what
        // waited behind it is sent by the next run.
        let mut held = Held::default();
        let spawned = supervise::thread("ringway-logger", Component::LoggerSink, move || {
            let n = held.sending.len();
            if n > 0 {
                held.sending.clear();
                thread_stats.failed.fetch_add(n as u64, Ordering::Relaxed);
                thread_stats.pending.fetch_sub(n, Ordering::Relaxed);
                tracing::error!(
                    "{thread_name}: {n} log entries dropped: the sending thread panicked"
                );
            }
            run(
                &thread_name,
                &rx,
                &batch,
                &thread_stats,
                &mut held,
                &mut send,
            );
            drop(done_tx.take());
        });
        if let Err(e) = spawned {
            tracing::error!("{name}: cannot start the logger thread: {e}");
        }
        Arc::new(Sink {
            name,
            tx,
            done,
            stats,
            max_pending,
            drop_warning: Default::default(),
        })
    }

    /// Asks the thread to send what it has and end; waits for it until
    /// `deadline`. Whether it ended in time.
    pub fn close(&self, deadline: Instant) -> bool {
        let _ = self.tx.send_deadline(Vec::new(), deadline);
        match self.done.recv_deadline(deadline) {
            Err(flume::RecvTimeoutError::Timeout) => {
                tracing::warn!("{}: log entries still unsent at shutdown", self.name);
                false
            }
            _ => true,
        }
    }

    /// The logger's `name` and where it is configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands entries (JSON documents) to the thread. Those past the
    /// backlog limit are dropped and counted, and all of them when the
    /// queue is full (in hand-overs or in bytes).
    pub fn send(&self, mut entries: Entries) {
        let n = entries.len();
        if n == 0 {
            return;
        }
        let stats = &self.stats;
        let before = stats.pending.fetch_add(n, Ordering::Relaxed);
        let room = self.max_pending.saturating_sub(before);
        if room < n {
            stats.pending.fetch_sub(n - room, Ordering::Relaxed);
            entries.truncate(room);
            self.dropped(n - room, "max pending entries limit exceeded", before);
            if room == 0 {
                return;
            }
        }
        let n = entries.len();
        let bytes: usize = entries.iter().map(Vec::len).sum();
        let queued = stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if queued + bytes > QUEUE_BYTES || self.tx.try_send(entries).is_err() {
            stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            stats.pending.fetch_sub(n, Ordering::Relaxed);
            self.dropped(n, "queue full", before);
        }
    }

    /// Counts `n` dropped entries; says so at most once a second.
    fn dropped(&self, n: usize, why: &str, pending: usize) {
        let total = self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if self.drop_warning.ready() {
            tracing::error!(
                "{}: {why}, discarding log entries (pending: {pending}, max_pending_entries: {}, dropped so far: {total})",
                self.name,
                self.max_pending
            );
        }
    }
}

/// A worker's entries not yet handed to their sinks.
#[derive(Default)]
pub struct WorkerQueue {
    pending: RefCell<Vec<(Arc<Sink>, Entries)>>,
}

impl WorkerQueue {
    /// Queues one entry for `sink`.
    pub fn push(&self, sink: &Arc<Sink>, entry: Vec<u8>) {
        let mut pending = self.pending.borrow_mut();
        let i = match pending.iter().position(|(s, _)| Arc::ptr_eq(s, sink)) {
            Some(i) => i,
            None => {
                pending.push((sink.clone(), Vec::with_capacity(SHIP_AT)));
                pending.len() - 1
            }
        };
        let (s, entries) = &mut pending[i];
        entries.push(entry);
        if entries.len() >= SHIP_AT {
            s.send(std::mem::replace(entries, Vec::with_capacity(SHIP_AT)));
        }
    }

    /// Hands everything queued to the sinks, and forgets them: a queue
    /// holds a sink only while it holds entries for it, so a sink no
    /// configuration holds any more can end. (Keeping those "still held
    /// elsewhere" kept them forever with two workers or more: each
    /// worker's queue was the other's reason.)
    pub fn ship(&self) {
        for (s, entries) in self.pending.borrow_mut().drain(..) {
            if !entries.is_empty() {
                s.send(entries);
            }
        }
    }
}

/// A sink thread's entries: those waiting for their batch, and the batch
/// being sent.
#[derive(Default)]
struct Held {
    batch: Entries,
    sending: Entries,
}

/// Takes entries from `rx` into batches and sends them, until the close
/// marker or every worker's side is gone.
fn run(
    name: &str,
    rx: &flume::Receiver<Entries>,
    cfg: &BatchConfig,
    stats: &SinkStats,
    held: &mut Held,
    send: &mut impl FnMut(&mut Entries) -> Result<(), String>,
) {
    let mut first = Instant::now();
    let mut last = Instant::now();
    loop {
        let got = if held.batch.is_empty() {
            rx.recv().map_err(|_| flume::RecvTimeoutError::Disconnected)
        } else {
            let due = (last + cfg.inactive).min(first + cfg.buffer);
            rx.recv_deadline(due)
        };
        match got {
            // An empty hand-over is the close marker.
            Ok(entries) if entries.is_empty() => {
                flush_all(name, held, cfg, stats, send);
                return;
            }
            Ok(entries) => {
                let bytes: usize = entries.iter().map(Vec::len).sum();
                stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                if held.batch.is_empty() {
                    first = Instant::now();
                }
                last = Instant::now();
                held.batch.extend(entries);
                while held.batch.len() >= cfg.max_size {
                    flush(name, held, cfg.max_size, cfg, stats, send);
                    first = Instant::now();
                }
            }
            Err(flume::RecvTimeoutError::Timeout) => flush_all(name, held, cfg, stats, send),
            Err(flume::RecvTimeoutError::Disconnected) => {
                flush_all(name, held, cfg, stats, send);
                return;
            }
        }
    }
}

/// Sends every waiting entry, in batches of at most `max_size`.
fn flush_all(
    name: &str,
    held: &mut Held,
    cfg: &BatchConfig,
    stats: &SinkStats,
    send: &mut impl FnMut(&mut Entries) -> Result<(), String>,
) {
    while !held.batch.is_empty() {
        flush(name, held, cfg.max_size, cfg, stats, send);
    }
}

/// Sends the first `n` waiting entries as one batch.
fn flush(
    name: &str,
    held: &mut Held,
    n: usize,
    cfg: &BatchConfig,
    stats: &SinkStats,
    send: &mut impl FnMut(&mut Entries) -> Result<(), String>,
) {
    let n = n.max(1).min(held.batch.len());
    if n == 0 {
        return;
    }
    held.sending.extend(held.batch.drain(..n));
    fault(Component::LoggerSink);
    flush_batch(name, &mut held.sending, cfg, stats, send);
    stats.pending.fetch_sub(n, Ordering::Relaxed);
}

fn flush_batch(
    name: &str,
    batch: &mut Vec<Vec<u8>>,
    cfg: &BatchConfig,
    stats: &SinkStats,
    send: &mut impl FnMut(&mut Entries) -> Result<(), String>,
) {
    // `send` removes what it delivered: a retry sends only the rest.
    for attempt in 0..=cfg.max_retry {
        let before = batch.len();
        let r = send(batch);
        stats
            .sent
            .fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
        match r {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) if attempt == cfg.max_retry => {
                tracing::error!("{name}: {} log entries dropped: {e}", batch.len());
            }
            Err(e) => {
                tracing::warn!(
                    "{name}: sending {} log entries failed, retrying: {e}",
                    batch.len()
                );
                std::thread::sleep(cfg.retry_delay);
            }
        }
    }
    stats
        .failed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(max_size: usize, inactive_ms: u64, max_retry: u32) -> BatchConfig {
        BatchConfig {
            max_size,
            inactive: Duration::from_millis(inactive_ms),
            buffer: Duration::from_secs(60),
            max_retry,
            retry_delay: Duration::from_millis(1),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    fn wait_for(stats: &SinkStats, f: impl Fn(&SinkStats) -> bool) {
        let t = Instant::now();
        while !f(stats) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "sink did not get there"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A sink whose sends report each batch's size.
    fn recording(cfg: BatchConfig) -> (Arc<Sink>, flume::Receiver<usize>) {
        let (tx, rx) = flume::unbounded();
        let sink = Sink::start("t".into(), cfg, Arc::default(), move |b| {
            let _ = tx.send(b.len());
            b.clear();
            Ok(())
        });
        (sink, rx)
    }

    #[test]
    fn full_batches_go_at_once_and_the_rest_when_inactive() {
        let (sink, sizes) = recording(batch(3, 200, 0));
        let t = Instant::now();
        sink.send((0..4).map(|i| vec![i]).collect());
        assert_eq!(sizes.recv_timeout(Duration::from_secs(5)), Ok(3));
        assert_eq!(sizes.recv_timeout(Duration::from_secs(5)), Ok(1));
        // The partial batch waited for the inactivity timeout.
        assert!(t.elapsed() >= Duration::from_millis(200));
        wait_for(&sink.stats, |s| s.sent.load(Ordering::Relaxed) == 4);
    }

    #[test]
    fn failures_are_retried_then_counted() {
        let calls = Arc::new(AtomicU64::new(0));
        let c2 = calls.clone();
        let sink = Sink::start("t".into(), batch(1, 50, 2), Arc::default(), move |_| {
            c2.fetch_add(1, Ordering::Relaxed);
            Err("down".into())
        });
        sink.send(vec![b"x".to_vec()]);
        wait_for(&sink.stats, |s| s.failed.load(Ordering::Relaxed) == 1);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(sink.stats.sent.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_retry_sends_only_what_was_not_delivered() {
        let (tx, sizes) = flume::unbounded();
        let mut calls = 0;
        let sink = Sink::start("t".into(), batch(3, 50, 1), Arc::default(), move |b| {
            calls += 1;
            let _ = tx.send(b.len());
            if calls == 1 {
                b.remove(0);
                return Err("lost the connection after one".into());
            }
            b.clear();
            Ok(())
        });
        sink.send(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(sizes.recv_timeout(Duration::from_secs(5)), Ok(3));
        assert_eq!(sizes.recv_timeout(Duration::from_secs(5)), Ok(2));
        wait_for(&sink.stats, |s| s.sent.load(Ordering::Relaxed) == 3);
        assert_eq!(sink.stats.failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stuck_sink_holds_at_most_its_byte_budget() {
        // The thread blocks on its first batch; what follows queues up.
        let (release, wait) = flume::bounded::<()>(0);
        let sink = Sink::start("t".into(), batch(1, 50, 0), Arc::default(), move |b| {
            let _ = wait.recv();
            b.clear();
            Ok(())
        });
        let mb = vec![0u8; 1 << 20];
        sink.send(vec![mb.clone()]);
        for _ in 0..100 {
            sink.send(vec![mb.clone()]);
        }
        // 64 MiB fit (the first is with the thread); the rest is dropped.
        let dropped = sink.stats.dropped.load(Ordering::Relaxed);
        assert!((36..=37).contains(&dropped), "{dropped}");
        drop(release);
    }

    #[test]
    fn the_backlog_stops_at_max_pending_entries_until_it_drains() {
        // The thread blocks on its first batch until released.
        let (release, wait) = flume::unbounded::<()>();
        let cfg = BatchConfig {
            max_pending: 4,
            ..batch(1, 50, 0)
        };
        let (tx, sent) = flume::unbounded();
        let sink = Sink::start("t".into(), cfg, Arc::default(), move |b| {
            let _ = wait.recv();
            let _ = tx.send(b.clone());
            b.clear();
            Ok(())
        });
        let stats = sink.stats.clone();
        sink.send(vec![b"0".to_vec()]);
        // Five more: three fit beside the one in flight, the rest is dropped.
        sink.send((1..=5).map(|i| vec![b'0' + i]).collect());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 4);
        sink.send(vec![b"6".to_vec()]);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        let got: Vec<Vec<u8>> = (0..4)
            .flat_map(|_| sent.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [b"0", b"1", b"2", b"3"].map(|b| b.to_vec()));
        wait_for(&stats, |s| s.pending.load(Ordering::Relaxed) == 0);
        // Drained, the sink takes entries again.
        release.send(()).unwrap();
        sink.send(vec![b"7".to_vec()]);
        assert_eq!(
            sent.recv_timeout(Duration::from_secs(5)),
            Ok(vec![b"7".to_vec()])
        );
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
        wait_for(&stats, |s| s.sent.load(Ordering::Relaxed) == 5);
    }

    #[test]
    fn close_sends_what_is_queued_and_waits_for_it() {
        let (sink, sizes) = recording(batch(100, 60_000, 0));
        sink.send(vec![b"a".to_vec()]);
        assert!(sink.close(Instant::now() + Duration::from_secs(5)));
        assert_eq!(sizes.try_recv(), Ok(1));
        assert_eq!(sink.stats.sent.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_last_holder_gone_the_rest_is_sent() {
        let (sink, sizes) = recording(batch(100, 60_000, 0));
        let stats = sink.stats.clone();
        let q = WorkerQueue::default();
        q.push(&sink, b"a".to_vec());
        q.push(&sink, b"b".to_vec());
        drop(sink);
        q.ship();
        // The queue let go of a sink no one else holds.
        assert!(q.pending.borrow().is_empty());
        assert_eq!(sizes.recv_timeout(Duration::from_secs(5)), Ok(2));
        wait_for(&stats, |s| s.sent.load(Ordering::Relaxed) == 2);
    }

    #[test]
    fn queues_of_several_workers_let_go_of_a_sink_once_shipped() {
        let (sink, sizes) = recording(batch(100, 60_000, 0));
        let (w0, w1) = (WorkerQueue::default(), WorkerQueue::default());
        w0.push(&sink, b"a".to_vec());
        w1.push(&sink, b"b".to_vec());
        w0.ship();
        w1.ship();
        // Neither queue keeps it for the other's sake.
        assert_eq!(Arc::strong_count(&sink), 1);
        drop(sink);
        let mut got = vec![sizes.recv_timeout(Duration::from_secs(5)).unwrap()];
        if got[0] == 1 {
            got.push(sizes.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        assert_eq!(got.iter().sum::<usize>(), 2);
    }
}
