//! One worker's lane: what the handlers running on one core share and
//! nothing else — the gateway settings, the request head limits, the
//! upstream connection pool, the plain upstreams' round-robin counters and
//! busy polling. Handlers (plain forwarding, `ai-proxy-multi`) take a
//! `&Lane`, never the worker: the worker (`server::worker`) owns the lane
//! along with its listeners, snapshot and log queues.

pub mod busy_poll;

use std::cell::RefCell;
use std::sync::Arc;

use crate::config::GatewaySettings;
use crate::http::HeadLimits;
use crate::upstream::Pool;
use busy_poll::BusyPoll;

pub struct Lane {
    pub gateway: Arc<GatewaySettings>,
    pub head_limits: HeadLimits,
    pub pool: Pool,
    /// Round-robin counters of plain upstreams, by `UpstreamSpec::slot`.
    rr: RefCell<Vec<u64>>,
    pub busy: BusyPoll,
}

impl Lane {
    /// A lane for `gateway`, with counters for `upstream_slots` upstreams.
    pub fn new(gateway: Arc<GatewaySettings>, upstream_slots: usize) -> Lane {
        Lane {
            head_limits: HeadLimits {
                max_head_bytes: gateway.limits.max_head_bytes,
                max_headers: gateway.limits.max_headers,
            },
            busy: BusyPoll::new(gateway.busy_poll),
            gateway,
            pool: Pool::new(),
            rr: RefCell::new(vec![0; upstream_slots]),
        }
    }

    /// Makes room for the round-robin counters of `upstream_slots`
    /// upstreams (a new configuration may have more).
    pub fn resize_rr(&self, upstream_slots: usize) {
        self.rr.borrow_mut().resize(upstream_slots, 0);
    }

    /// Next round-robin position for upstream `slot`.
    #[inline]
    pub fn next_rr(&self, slot: usize) -> u64 {
        let mut rr = self.rr.borrow_mut();
        match rr.get_mut(slot) {
            Some(c) => {
                let v = *c;
                *c = v.wrapping_add(1);
                v
            }
            None => 0,
        }
    }
}
