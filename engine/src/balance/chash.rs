//! Consistent hashing for `balancer.algorithm: chash`.
//!
//! A ring of virtual points (160 per unit of weight, capped) hashed with a
//! fixed-seed hash so every worker and every gateway process maps a key to
//! the same member. A lookup finds the first point at or after the key's
//! hash; when that member is unavailable the walk continues clockwise, so
//! only keys that lived on the unavailable member move (minimal remapping).

/// Points per unit of weight, and the most points any member gets.
const POINTS_PER_WEIGHT: u32 = 160;
const MAX_POINTS_PER_MEMBER: u32 = 160 * 16;

#[derive(Debug, Clone, Default)]
pub struct ChashRing {
    /// (point, member), sorted by point.
    points: Box<[(u32, u32)]>,
    members: usize,
}

impl ChashRing {
    /// Builds the ring for members with `weights` (index = member); weight
    /// 0 members get no points unless all are 0.
    pub fn new(weights: &[u32]) -> ChashRing {
        let all_zero = weights.iter().all(|&w| w == 0);
        let mut points = Vec::new();
        for (m, &w) in weights.iter().enumerate() {
            let w = if all_zero { 1 } else { w };
            let n = w
                .saturating_mul(POINTS_PER_WEIGHT)
                .min(MAX_POINTS_PER_MEMBER);
            for i in 0..n {
                let label = format!("{m}-{i}");
                points.push((hash(label.as_bytes()), m as u32));
            }
        }
        points.sort_unstable();
        ChashRing {
            points: points.into_boxed_slice(),
            members: weights.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Members in ring order starting at `key`'s point, each once: the
    /// first is the owner, the rest are the fallback order.
    pub fn walk(&self, key: &[u8]) -> RingWalk<'_> {
        let h = hash(key);
        RingWalk {
            start: self.points.partition_point(|&(p, _)| p < h),
            k: 0,
            seen: Seen::new(self.members),
            ring: self,
        }
    }
}

/// Iterator of [`ChashRing::walk`].
pub struct RingWalk<'a> {
    ring: &'a ChashRing,
    start: usize,
    k: usize,
    seen: Seen,
}

impl Iterator for RingWalk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let n = self.ring.points.len();
        while self.k < n {
            let (_, m) = self.ring.points[(self.start + self.k) % n];
            self.k += 1;
            if self.seen.insert(m as usize) {
                return Some(m as usize);
            }
        }
        None
    }
}

/// A set of member indexes; no allocation up to 64 members.
pub(crate) enum Seen {
    Small(u64),
    Large(Vec<bool>),
}

impl Seen {
    pub(crate) fn new(members: usize) -> Seen {
        if members <= 64 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![false; members])
        }
    }

    /// Adds `m`; false if it was already present.
    pub(crate) fn insert(&mut self, m: usize) -> bool {
        match self {
            Seen::Small(bits) => {
                let b = 1u64 << m;
                let fresh = *bits & b == 0;
                *bits |= b;
                fresh
            }
            Seen::Large(v) => !std::mem::replace(&mut v[m], true),
        }
    }
}

/// FNV-1a 32-bit with a final avalanche: stable across processes and
/// versions (a seeded hasher would break stickiness between gateways).
pub fn hash(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // murmur3 fmix32
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(r: &ChashRing, key: &str, down: &[usize]) -> usize {
        r.walk(key.as_bytes()).find(|m| !down.contains(m)).unwrap()
    }

    #[test]
    fn same_key_same_member_and_spread_follows_weight() {
        let r = ChashRing::new(&[1, 1, 2]);
        let mut counts = [0usize; 3];
        for i in 0..4000 {
            let k = format!("user-{i}");
            let a = owner(&r, &k, &[]);
            assert_eq!(a, owner(&r, &k, &[]));
            counts[a] += 1;
        }
        // weights 1:1:2 → roughly 25/25/50 %
        assert!(counts[2] > counts[0] && counts[2] > counts[1], "{counts:?}");
        assert!(counts.iter().all(|&c| c > 600), "{counts:?}");
    }

    #[test]
    fn only_keys_of_an_unavailable_member_move() {
        let r = ChashRing::new(&[1, 1, 1, 1]);
        let mut moved = 0;
        for i in 0..2000 {
            let k = format!("session-{i}");
            let before = owner(&r, &k, &[]);
            let after = owner(&r, &k, &[2]);
            if before != 2 {
                assert_eq!(before, after, "key {k} moved although its member stayed up");
            } else {
                assert_ne!(after, 2);
                moved += 1;
            }
        }
        assert!(moved > 200);
    }

    #[test]
    fn walk_visits_every_member_once() {
        let r = ChashRing::new(&[3, 0, 1]);
        let order: Vec<usize> = r.walk(b"k").collect();
        assert_eq!(order.len(), 2, "weight-0 member has no points: {order:?}");
        let zero = ChashRing::new(&[0, 0]);
        assert_eq!(zero.walk(b"k").count(), 2);
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(hash(b"john"), hash(b"john"));
        assert_ne!(hash(b"john"), hash(b"jane"));
    }
}
