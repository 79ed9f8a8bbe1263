//! Readiness as APISIX's Status API judges it, and what ringway adds:
//! ready once the configuration is loaded and every worker is serving;
//! not ready while draining, or while the configuration source (etcd)
//! has been unreachable longer than `gateway.status.stale_after`.
//!
//! The facts come from atomics others write off the request path — each
//! worker's [`Serving`] flag (set once its runtime holds its listeners
//! and runs their accept loops, cleared when that runtime ends), the
//! shutdown flag, the snapshot cell's generation, the configuration
//! source's state in [`crate::observe::metrics`] — and are read only when
//! a probe asks. [`Facts::verdict`] and the bodies are
//! pure, so every answer is unit-tested here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

/// Which workers are serving: one flag per worker, set by the worker once
/// its runtime has registered its listeners and spawned their accept
/// loops, and cleared when that runtime ends (a panic that unwinds it, or
/// the end of its drain), so a worker restarting after a panic counts
/// again only once it serves again.
pub struct Serving {
    flags: Box<[AtomicBool]>,
}

impl Serving {
    pub fn new(workers: usize) -> Arc<Serving> {
        Arc::new(Serving {
            flags: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Marks worker `index` serving until the guard is dropped.
    pub fn serve(self: &Arc<Self>, index: usize) -> ServingGuard {
        self.set(index, true);
        ServingGuard {
            serving: self.clone(),
            index,
        }
    }

    /// Worker `index` is not serving (its runtime is starting over).
    pub fn stop(&self, index: usize) {
        self.set(index, false);
    }

    fn set(&self, index: usize, on: bool) {
        if let Some(f) = self.flags.get(index) {
            f.store(on, Ordering::Release);
        }
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.flags.len()
    }

    /// The workers not serving now, by index.
    pub fn not_serving(&self) -> Vec<usize> {
        self.flags
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.load(Ordering::Acquire))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Clears its worker's [`Serving`] flag when dropped: at the end of the
/// worker's run, whether it returns or unwinds.
pub struct ServingGuard {
    serving: Arc<Serving>,
    index: usize,
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        self.serving.stop(self.index);
    }
}

/// The configuration source's side of readiness (etcd; a file never goes
/// stale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceFacts {
    /// Connected and watched.
    pub up: bool,
    /// How long it has been unreachable, the last good configuration
    /// serving.
    pub stale_for: Option<Duration>,
    /// The etcd revision served.
    pub revision: u64,
}

/// What readiness is judged on, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub workers: usize,
    /// Workers not serving, by index.
    pub not_serving: Vec<usize>,
    /// Shutdown was triggered: no new connections, in-flight ones finish.
    pub draining: bool,
    /// The served configuration's generation (0 as loaded at start, one
    /// more for each change published since).
    pub generation: u64,
    /// `None` for the file.
    pub source: Option<SourceFacts>,
    pub stale_after: Duration,
}

impl Facts {
    /// `Ok` when ready; else every reason it is not, each a sentence.
    pub fn verdict(&self) -> Result<(), Vec<String>> {
        let mut not = Vec::new();
        if self.draining {
            not.push("draining: the gateway is shutting down".to_owned());
        }
        if !self.not_serving.is_empty() {
            let ids: Vec<String> = self.not_serving.iter().map(|i| i.to_string()).collect();
            not.push(format!(
                "worker count: {} but serving count: {} (worker id: {} not serving)",
                self.workers,
                self.workers - self.not_serving.len(),
                ids.join(", ")
            ));
        }
        if let Some(stale) = self.stale() {
            not.push(format!(
                "configuration source (etcd) unreachable for {:.1}s, stale_after is {}s; the last good configuration serves",
                stale.as_secs_f64(),
                self.stale_after.as_secs_f64()
            ));
        }
        if not.is_empty() {
            Ok(())
        } else {
            Err(not)
        }
    }

    /// How long the source has been unreachable, once that reaches
    /// `stale_after` (at once for `stale_after: 0`).
    fn stale(&self) -> Option<Duration> {
        self.source
            .and_then(|s| s.stale_for)
            .filter(|d| *d >= self.stale_after)
    }

    /// `/status/ready`: 200 `{"status":"ok"}`, or 503
    /// `{"status":"error","error":…}` (APISIX's shapes; the reasons joined
    /// with "; ").
    pub fn ready_answer(&self) -> (u16, Value) {
        match self.verdict() {
            Ok(()) => (200, json!({"status": "ok"})),
            Err(not) => (503, json!({"status": "error", "error": not.join("; ")})),
        }
    }

    /// `/status`: always 200 `{"status":"ok"}` while the process runs
    /// (liveness, as APISIX), with the details of readiness beside it.
    pub fn status_answer(&self) -> Value {
        let mut configuration = json!({"generation": self.generation});
        match self.source {
            None => configuration["source"] = json!("file"),
            Some(s) => {
                configuration["source"] = json!("etcd");
                configuration["source_up"] = json!(s.up);
                configuration["revision"] = json!(s.revision);
                configuration["stale_seconds"] =
                    json!(s.stale_for.map_or(0.0, |d| d.as_millis() as f64 / 1000.0));
                configuration["stale_after_seconds"] = json!(self.stale_after.as_secs_f64());
            }
        }
        let mut v = json!({
            "status": "ok",
            "ready": self.verdict().is_ok(),
            "workers": {
                "total": self.workers,
                "serving": self.workers - self.not_serving.len(),
            },
            "draining": self.draining,
            "configuration": configuration,
            "io_driver": crate::observe::metrics::io_driver(),
        });
        if let Err(not) = self.verdict() {
            v["not_ready"] = json!(not);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            workers: 4,
            not_serving: Vec::new(),
            draining: false,
            generation: 1,
            source: None,
            stale_after: Duration::from_secs(60),
        }
    }

    fn etcd(stale_for: Option<Duration>) -> Option<SourceFacts> {
        Some(SourceFacts {
            up: stale_for.is_none(),
            stale_for,
            revision: 7,
        })
    }

    #[test]
    fn ready_when_every_worker_serves_and_nothing_else_is_wrong() {
        let f = facts();
        assert_eq!(f.ready_answer(), (200, json!({"status": "ok"})));
        let s = f.status_answer();
        assert_eq!(s["status"], "ok");
        assert_eq!(s["ready"], true);
        assert_eq!(s["workers"], json!({"total": 4, "serving": 4}));
        assert_eq!(
            s["configuration"],
            json!({"generation": 1, "source": "file"})
        );
        assert!(s.get("not_ready").is_none());
    }

    #[test]
    fn workers_not_serving_are_named_as_apisix_counts_them() {
        let f = Facts {
            not_serving: vec![1, 3],
            ..facts()
        };
        let (code, body) = f.ready_answer();
        assert_eq!(code, 503);
        assert_eq!(body["status"], "error");
        assert_eq!(
            body["error"],
            "worker count: 4 but serving count: 2 (worker id: 1, 3 not serving)"
        );
        let s = f.status_answer();
        assert_eq!(s["status"], "ok", "liveness stays ok");
        assert_eq!(s["ready"], false);
        assert_eq!(s["workers"]["serving"], 2);
    }

    #[test]
    fn draining_is_not_ready_and_every_reason_is_given() {
        let f = Facts {
            draining: true,
            not_serving: vec![0],
            ..facts()
        };
        let (code, body) = f.ready_answer();
        assert_eq!(code, 503);
        let e = body["error"].as_str().unwrap();
        assert!(
            e.starts_with("draining: the gateway is shutting down; worker count: 4"),
            "{e}"
        );
        assert_eq!(f.status_answer()["not_ready"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_stale_source_is_not_ready_only_past_stale_after() {
        let under = Facts {
            source: etcd(Some(Duration::from_secs(59))),
            ..facts()
        };
        assert_eq!(
            under.ready_answer().0,
            200,
            "the last good configuration serves"
        );
        let s = under.status_answer();
        assert_eq!(s["configuration"]["source"], "etcd");
        assert_eq!(s["configuration"]["source_up"], false);
        assert_eq!(s["configuration"]["stale_seconds"], 59.0);
        assert_eq!(s["configuration"]["stale_after_seconds"], 60.0);
        assert_eq!(s["configuration"]["revision"], 7);

        let past = Facts {
            source: etcd(Some(Duration::from_millis(60_500))),
            ..facts()
        };
        let (code, body) = past.ready_answer();
        assert_eq!(code, 503);
        assert_eq!(
            body["error"],
            "configuration source (etcd) unreachable for 60.5s, stale_after is 60s; the last good configuration serves"
        );

        let up = Facts {
            source: etcd(None),
            ..facts()
        };
        assert_eq!(up.ready_answer().0, 200);
        assert_eq!(up.status_answer()["configuration"]["stale_seconds"], 0.0);
    }

    #[test]
    fn stale_after_zero_means_not_ready_as_soon_as_the_source_is_lost() {
        let f = Facts {
            source: etcd(Some(Duration::ZERO)),
            stale_after: Duration::ZERO,
            ..facts()
        };
        assert_eq!(f.ready_answer().0, 503);
    }

    #[test]
    fn a_worker_counts_while_its_guard_lives() {
        let s = Serving::new(3);
        assert_eq!(s.not_serving(), vec![0, 1, 2]);
        let g0 = s.serve(0);
        let g2 = s.serve(2);
        assert_eq!(s.not_serving(), vec![1]);
        drop(g2);
        assert_eq!(s.not_serving(), vec![1, 2]);
        s.stop(0);
        assert_eq!(s.not_serving(), vec![0, 1, 2]);
        drop(g0);
        assert_eq!(s.workers(), 3);
        // An index past the end is ignored, not a panic.
        drop(s.serve(9));
    }
}
