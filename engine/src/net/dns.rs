//! Whether host names are looked up at all in this process: a switch for
//! harnesses that must not touch the network. Resolution itself is
//! upstream's ([`crate::upstream::endpoint`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by harnesses that must not touch the network (the fuzz oracles
/// compile thousands of configurations naming arbitrary hosts).
static NO_DNS: AtomicBool = AtomicBool::new(false);

/// Leaves host names unresolved from now on in this process, as if DNS
/// had no answer yet (IP literals still resolve). For the fuzz oracles.
#[doc(hidden)]
pub fn disable_dns() {
    NO_DNS.store(true, Ordering::Relaxed);
}

/// Whether host names are looked up (see [`disable_dns`]).
pub fn dns_enabled() -> bool {
    !NO_DNS.load(Ordering::Relaxed)
}
