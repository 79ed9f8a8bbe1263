//! Per-instance shared state: active faults (with an optional expiry),
//! counters, the request log and a seeded RNG. Shared by the worker
//! threads; the mock may lock (it is not the system under test), but the
//! zero-fault fast path only reads one atomic flag.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{Faults, InstanceConfig};

/// splitmix64: small, seedable, good enough for fault rates and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-12);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A request as received, for `GET /_requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl From<&crate::http::Request> for RecordedRequest {
    fn from(r: &crate::http::Request) -> RecordedRequest {
        RecordedRequest {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.to_pairs(),
            body: String::from_utf8_lossy(&r.body).into_owned(),
        }
    }
}

/// An entry of the request log: model requests are kept as received (one
/// reference count, no copy on the request path) and turned into
/// [`RecordedRequest`]s only when `/_requests` is read.
enum Logged {
    Request(Arc<crate::http::Request>),
    Recorded(RecordedRequest),
}

impl Logged {
    fn recorded(&self) -> RecordedRequest {
        match self {
            Logged::Request(r) => RecordedRequest::from(&**r),
            Logged::Recorded(r) => r.clone(),
        }
    }
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Counters, as `GET /_stats` reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStats {
    pub instance: String,
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub open_streams: i64,
    pub faults_injected: u64,
    pub connections: u64,
    pub token_requests: u64,
}

struct Active {
    faults: Faults,
    until: Option<Instant>,
}

pub struct Shared {
    pub config: InstanceConfig,
    active: Mutex<Active>,
    faults_on: AtomicBool,
    rng: Mutex<Rng>,
    pub seq: AtomicU64,
    requests: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    pub open_streams: AtomicI64,
    faults_injected: AtomicU64,
    pub connections: AtomicU64,
    pub token_requests: AtomicU64,
    log: Mutex<VecDeque<Logged>>,
    /// Whether the instance accepts connections (see `refuse_for_secs`).
    pub listening: AtomicBool,
    /// Worker sockets currently listening for this instance.
    pub open_listeners: std::sync::atomic::AtomicUsize,
    pub refuse_until: Mutex<Option<Instant>>,
    /// Stored Responses API responses (`store`, the default), for
    /// `previous_response_id` and the `…/responses/{id}` endpoints.
    pub responses: Mutex<Store<StoredResponse>>,
    /// Conversations API conversations (`…/conversations`, `conversation`
    /// on a response).
    pub conversations: Mutex<Store<StoredConversation>>,
}

/// A stored response: the response object and the input items it answered.
#[derive(Clone)]
pub struct StoredResponse {
    pub response: serde_json::Value,
    pub input_items: Vec<serde_json::Value>,
}

/// A conversation: its object and its items, oldest first.
#[derive(Clone)]
pub struct StoredConversation {
    pub conversation: serde_json::Value,
    pub items: Vec<serde_json::Value>,
}

/// The newest [`Store::CAPACITY`] stored objects (older ones are
/// forgotten, so a long benchmark does not grow the mock without bound).
pub struct Store<T> {
    by_id: std::collections::HashMap<String, T>,
    order: VecDeque<String>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            by_id: std::collections::HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> Store<T> {
    pub const CAPACITY: usize = 10_000;

    pub fn put(&mut self, id: String, stored: T) {
        if self.by_id.insert(id.clone(), stored).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> bool {
        let had = self.by_id.remove(id).is_some();
        if had {
            self.order.retain(|o| o != id);
        }
        had
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: InstanceConfig) -> Shared {
        let faults_on = config.faults != Faults::default();
        Shared {
            rng: Mutex::new(Rng::new(config.seed)),
            active: Mutex::new(Active {
                faults: config.faults.clone(),
                until: None,
            }),
            faults_on: AtomicBool::new(faults_on),
            config,
            seq: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            open_streams: AtomicI64::new(0),
            faults_injected: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
            listening: AtomicBool::new(true),
            open_listeners: std::sync::atomic::AtomicUsize::new(0),
            refuse_until: Mutex::new(None),
            responses: Mutex::new(Store::default()),
            conversations: Mutex::new(Store::default()),
        }
    }

    /// The stored Responses API responses.
    pub fn response_store(&self) -> std::sync::MutexGuard<'_, Store<StoredResponse>> {
        lock(&self.responses)
    }

    /// The conversations.
    pub fn conversation_store(&self) -> std::sync::MutexGuard<'_, Store<StoredConversation>> {
        lock(&self.conversations)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The instance faults in force now (expired ones are cleared).
    pub fn faults(&self) -> Faults {
        if !self.faults_on.load(Ordering::Acquire) {
            return Faults::default();
        }
        let mut a = lock(&self.active);
        if a.until.is_some_and(|u| Instant::now() >= u) {
            a.faults = Faults::default();
            a.until = None;
            self.faults_on.store(false, Ordering::Release);
        }
        a.faults.clone()
    }

    /// Replaces the instance faults, optionally for a limited time.
    pub fn set_faults(&self, faults: Faults, for_duration: Option<std::time::Duration>) {
        if let Some(secs) = faults.refuse_for_secs {
            *lock(&self.refuse_until) = Some(Instant::now() + std::time::Duration::from_secs(secs));
            self.listening.store(false, Ordering::Release);
        }
        let on = faults != Faults::default();
        let mut a = lock(&self.active);
        a.faults = faults;
        a.until = for_duration.map(|d| Instant::now() + d);
        self.faults_on.store(on, Ordering::Release);
    }

    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    pub fn count(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_status).entry(status).or_default() += 1;
    }

    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    pub fn fault_injected(&self) {
        self.faults_injected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record(&self, r: RecordedRequest) {
        self.log(Logged::Recorded(r));
    }

    /// Records a model request as received.
    pub fn record_request(&self, r: Arc<crate::http::Request>) {
        self.log(Logged::Request(r));
    }

    fn log(&self, entry: Logged) {
        let mut log = lock(&self.log);
        if log.len() >= self.config.max_recorded.max(1) {
            log.pop_front();
        }
        log.push_back(entry);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().map(Logged::recorded).collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub fn stats(&self) -> InstanceStats {
        InstanceStats {
            instance: self.config.name.clone(),
            requests: self.requests.load(Ordering::Relaxed),
            by_status: lock(&self.by_status).clone(),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            open_streams: self.open_streams.load(Ordering::Relaxed),
            faults_injected: self.faults_injected.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            token_requests: self.token_requests.load(Ordering::Relaxed),
        }
    }

    /// Whether the listener should be open now (re-opens after a timed
    /// refusal).
    pub fn should_listen(&self) -> bool {
        if self.listening.load(Ordering::Acquire) {
            return true;
        }
        let mut until = lock(&self.refuse_until);
        match *until {
            Some(u) if Instant::now() >= u => {
                *until = None;
                self.listening.store(true, Ordering::Release);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_uniformish() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mean: f64 = (0..10_000).map(|_| a.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn timed_faults_expire() {
        let s = Shared::new(InstanceConfig::new("a"));
        s.set_faults(
            Faults {
                status: Some(429),
                ..Default::default()
            },
            Some(std::time::Duration::from_millis(30)),
        );
        assert_eq!(s.faults().status, Some(429));
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert_eq!(s.faults(), Faults::default());
    }
}
