//! mock-llm: an OpenAI- and Anthropic-compatible upstream with scripted
//! latency and chaos knobs, for tests, demos and benchmarks.
//!
//! ```no_run
//! use std::time::Duration;
//! let mock = mock_llm::MockServer::builder()
//!     .instance(mock_llm::InstanceConfig::new("openai-a").ttft(Duration::from_millis(200)).tokens(50))
//!     .instance(mock_llm::InstanceConfig::new("deepseek-b"))
//!     .spawn()
//!     .unwrap();
//! let a = mock.instance("openai-a");
//! println!("{}", a.url());
//! ```
//!
//! Modules: [`config`] (instance settings, faults), [`state`] (counters,
//! request log, RNG), [`http`] (the mock's own small HTTP/1.1 codec),
//! [`api`] (endpoints), [`stream`] (timed SSE writing), [`server`] (worker
//! threads and listeners), [`content`] (tokens and the prompt-token rule).

pub mod api;
pub mod client;
pub mod config;
pub mod content;
pub mod http;
pub mod server;
pub mod spacing;
pub mod state;
pub mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::{Dist, Faults, InstanceConfig};
pub use spacing::JsonStyle;
pub use state::{InstanceStats, RecordedRequest};

/// Builds a [`MockServer`].
#[derive(Default)]
pub struct Builder {
    instances: Vec<InstanceConfig>,
    workers: usize,
}

impl Builder {
    pub fn instance(mut self, c: InstanceConfig) -> Builder {
        self.instances.push(c);
        self
    }

    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n;
        self
    }

    /// Binds every instance and starts the worker threads; returns once
    /// they are listening.
    pub fn spawn(self) -> std::io::Result<MockServer> {
        let workers = self.workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        let mut handles = Vec::new();
        for cfg in self.instances {
            let first = server::bind(cfg.listen)?;
            let addr = first.local_addr()?;
            let shared = Arc::new(state::Shared::new(InstanceConfig {
                listen: addr,
                ..cfg
            }));
            let mut listener = Some(first);
            for w in per_worker.iter_mut() {
                let l = match listener.take() {
                    Some(l) => l,
                    None => server::bind(addr)?,
                };
                w.push((shared.clone(), addr, Some(l)));
            }
            handles.push(InstanceHandle {
                shared,
                addr,
                workers,
            });
        }
        let mut threads = Vec::new();
        for (i, instances) in per_worker.into_iter().enumerate() {
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mock-llm-w{i}"))
                    .spawn(move || server::run_worker(instances, stop))?,
            );
        }
        for h in &handles {
            h.wait_listeners(workers);
        }
        Ok(MockServer {
            handles,
            stop,
            threads,
        })
    }
}

/// A running mock with one or more instances.
pub struct MockServer {
    handles: Vec<InstanceHandle>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MockServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The instance called `name` (panics if there is none: tests only).
    #[allow(clippy::panic)]
    pub fn instance(&self, name: &str) -> &InstanceHandle {
        match self.handles.iter().find(|h| h.name() == name) {
            Some(h) => h,
            None => panic!("mock-llm has no instance named {name}"),
        }
    }

    pub fn instances(&self) -> &[InstanceHandle] {
        &self.handles
    }

    /// Stops every worker and waits for them.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One instance of a running mock.
pub struct InstanceHandle {
    shared: Arc<state::Shared>,
    addr: SocketAddr,
    workers: usize,
}

impl InstanceHandle {
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> InstanceStats {
        self.shared.stats()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests()
    }

    /// Sets instance faults; `for_duration` in `faults` is not used here
    /// (pass it separately).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults, None)
    }

    pub fn set_faults_for(&self, faults: Faults, d: Duration) {
        self.shared.set_faults(faults, Some(d))
    }

    pub fn clear_faults(&self) {
        self.shared.set_faults(Faults::default(), None)
    }

    /// Closes the listening sockets (new connections are refused) and
    /// returns once every worker has closed its socket.
    pub fn stop_listening(&self) {
        self.shared.listening.store(false, Ordering::Release);
        if let Ok(mut u) = self.shared.refuse_until.lock() {
            *u = None;
        }
        self.wait_listeners(0);
    }

    /// Listens again on the same port.
    pub fn start_listening(&self) {
        self.shared.listening.store(true, Ordering::Release);
        self.wait_listeners(self.workers);
    }

    fn wait_listeners(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.shared.open_listeners.load(Ordering::Acquire) != n
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
