//! Whether a Redis deployment answers. A call that cannot reach it (a
//! connect or I/O error, a timeout) marks the [`Target`] down; while it is
//! down, calls fail at once with [`RedisError::Down`] instead of dialing
//! on every request (so `allow_degradation` decides without waiting), and
//! one background thread (`ringway-redis`, supervised) sends it `PING`
//! every [`PROBE_EVERY`] until it answers, then marks it up. Workers only
//! load a flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::client::{ping, RedisError, Target};
use crate::observe::metrics;
use crate::supervise::{self, fault, Component};

/// How often a down deployment is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// A deployment's reachability, shared by every worker.
#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
}

impl Health {
    #[inline]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// What a call's outcome says about the deployment: an error that means
/// it could not be reached marks it down and starts probing it.
pub fn observe<T>(target: &Target, r: &Result<T, RedisError>) {
    if matches!(r, Err(RedisError::Io(_) | RedisError::Timeout)) {
        mark_down(target, r.as_ref().err());
    }
}

fn mark_down(target: &Target, why: Option<&RedisError>) {
    let health = &target.state.health;
    if health.down.swap(true, Ordering::Relaxed) {
        return;
    }
    metrics::REDIS_DOWN.inc();
    if prober().try_send(target.clone()).is_err() {
        // No probing possible: let the next call try for itself.
        health.down.store(false, Ordering::Relaxed);
        return;
    }
    let why = why.map(ToString::to_string).unwrap_or_default();
    tracing::warn!(
        redis = %target.describe(),
        "redis is down ({why}); calls answer at once (allow_degradation decides) until a background probe reaches it"
    );
}

/// The probe thread's queue of deployments that went down.
fn prober() -> &'static flume::Sender<Target> {
    static PROBER: OnceLock<flume::Sender<Target>> = OnceLock::new();
    PROBER.get_or_init(|| {
        let (tx, rx) = flume::bounded::<Target>(1024);
        // Outlives a run that panics: every deployment stays probed.
        let mut down: Vec<Target> = Vec::new();
        let spawned = supervise::thread("ringway-redis", Component::RedisProbe, move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => {
                    crate::timer::forget_driver();
                    rt.block_on(probe_loop(&rx, &mut down));
                }
                Err(e) => tracing::error!("redis probing disabled: cannot start a runtime: {e}"),
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the redis probe thread: {e}");
        }
        tx
    })
}

/// Probes the deployments in `down` until each answers, taking new ones
/// from `rx`.
async fn probe_loop(rx: &flume::Receiver<Target>, down: &mut Vec<Target>) {
    loop {
        if down.is_empty() {
            match rx.recv_async().await {
                Ok(t) => down.push(t),
                Err(_) => return,
            }
        }
        down.extend(rx.try_iter());
        // A deployment no configuration holds any more is forgotten.
        down.retain(|t| Arc::strong_count(&t.state) > 1);
        for t in down.iter() {
            fault(Component::RedisProbe);
            let r = ping(t).await;
            if !matches!(r, Err(RedisError::Io(_) | RedisError::Timeout)) {
                t.state.health.down.store(false, Ordering::Relaxed);
                tracing::info!(redis = %t.describe(), "redis answers again");
            }
        }
        down.retain(|t| t.state.health.is_down());
        if !down.is_empty() {
            monoio::time::sleep(PROBE_EVERY).await;
        }
    }
}
