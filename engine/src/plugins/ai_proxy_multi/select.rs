//! The order a request tries instances in: priority groups highest first;
//! inside a group, smooth weighted round robin from one global atomic
//! ticket (so the configured split is exact across workers), or the
//! consistent-hash ring walked from the request's key. Pure iteration over
//! the compiled plan; the handler decides which instances to skip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::balance::chash::{RingWalk, Seen};
use crate::balance::{ChashRing, WrrCycle};

/// Instances of one priority.
#[derive(Debug)]
pub struct Group {
    pub priority: i64,
    /// Indexes into the plugin's instance list.
    pub members: Box<[usize]>,
    wrr: WrrCycle,
    ring: Option<ChashRing>,
    /// Shared by every worker (and carried across reloads).
    ticket: Arc<AtomicU64>,
}

impl Group {
    pub fn new(
        priority: i64,
        members: Vec<usize>,
        weights: &[u32],
        chash: bool,
        ticket: Arc<AtomicU64>,
    ) -> Group {
        Group {
            priority,
            wrr: WrrCycle::new(weights),
            ring: chash.then(|| ChashRing::new(weights)),
            members: members.into_boxed_slice(),
            ticket,
        }
    }
}

/// Instance indexes in the order to try them.
pub struct Plan<'a> {
    groups: &'a [Group],
    key: Option<&'a [u8]>,
    next_group: usize,
    current: Option<(usize, Order<'a>)>,
}

enum Order<'a> {
    Wrr {
        cycle: &'a WrrCycle,
        ticket: u64,
        k: usize,
        seen: Seen,
    },
    Ring(RingWalk<'a>),
}

impl<'a> Plan<'a> {
    /// `key` is the consistent-hash key (`None` for round robin, or when
    /// the request has no value for the configured key: then round robin).
    pub fn new(groups: &'a [Group], key: Option<&'a [u8]>) -> Plan<'a> {
        Plan {
            groups,
            key,
            next_group: 0,
            current: None,
        }
    }

    fn open(&mut self, gi: usize) -> Order<'a> {
        let g = &self.groups[gi];
        match (&g.ring, self.key) {
            (Some(ring), Some(key)) => Order::Ring(ring.walk(key)),
            _ => Order::Wrr {
                cycle: &g.wrr,
                // The ticket is taken only when a request reaches this
                // group, so the top group's split stays exact.
                ticket: g.ticket.fetch_add(1, Ordering::Relaxed),
                k: 0,
                seen: Seen::new(g.members.len()),
            },
        }
    }
}

impl Iterator for Plan<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if let Some((gi, order)) = &mut self.current {
                let members = &self.groups[*gi].members;
                let m = match order {
                    Order::Ring(walk) => walk.next(),
                    Order::Wrr {
                        cycle,
                        ticket,
                        k,
                        seen,
                    } => loop {
                        if *k >= cycle.len() {
                            break None;
                        }
                        let Some(m) = cycle.pick(*ticket + *k as u64) else {
                            break None;
                        };
                        *k += 1;
                        if seen.insert(m) {
                            break Some(m);
                        }
                    },
                };
                if let Some(m) = m {
                    return Some(members[m]);
                }
                self.current = None;
            }
            if self.next_group >= self.groups.len() {
                return None;
            }
            let gi = self.next_group;
            self.next_group += 1;
            let order = self.open(gi);
            self.current = Some((gi, order));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(priority: i64, members: Vec<usize>, weights: &[u32], chash: bool) -> Group {
        Group::new(priority, members, weights, chash, Arc::default())
    }

    #[test]
    fn weighted_split_is_exact_and_fallback_covers_everyone() {
        let groups = [group(0, vec![0, 1], &[8, 2], false)];
        let mut firsts = [0; 2];
        for _ in 0..10 {
            let order: Vec<usize> = Plan::new(&groups, None).collect();
            assert_eq!(order.len(), 2);
            firsts[order[0]] += 1;
        }
        assert_eq!(firsts, [8, 2]);
    }

    #[test]
    fn higher_priority_first_then_lower() {
        let groups = [
            group(1, vec![0], &[0], false),
            group(0, vec![1, 2], &[1, 1], false),
        ];
        let order: Vec<usize> = Plan::new(&groups, None).collect();
        assert_eq!(order[0], 0);
        assert_eq!(order.len(), 3);
        // Only the first group's ticket advances when a request stops early.
        let _ = Plan::new(&groups, None).next();
        assert_eq!(groups[1].ticket.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn chash_is_sticky_and_falls_back_to_round_robin_without_a_key() {
        let groups = [group(0, vec![0, 1, 2], &[1, 1, 1], true)];
        let a: Vec<usize> = Plan::new(&groups, Some(b"user-1")).collect();
        let b: Vec<usize> = Plan::new(&groups, Some(b"user-1")).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        let firsts: std::collections::BTreeSet<usize> = (0..6)
            .map(|_| Plan::new(&groups, None).next().unwrap())
            .collect();
        assert_eq!(firsts.len(), 3);
    }
}
