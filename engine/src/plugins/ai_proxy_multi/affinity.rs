//! Which instance holds a stored Responses API response.
//!
//! OpenAI keeps a response (`store`, the default) in the account that
//! made it: a follow-up naming it (`previous_response_id`) and the
//! `…/responses/{id}` endpoints work only there. Balancing spreads a
//! conversation over instances, so the gateway remembers who answered:
//! a direct-mapped table of atomics shared by every worker — no lock, no
//! allocation after the first use, bounded memory — from a hash of the
//! response id to a tag of the instance's name. Each id has a bucket of
//! two slots holding the two newest ids that hashed to it (the newest
//! first), so a fresh entry is lost only when two later ids land on its
//! bucket before its follow-up comes (with one slot, one was enough: one
//! of 1,956 follow-ups in a `loadgen fallback` run became a probe). An entry
//! lost anyway, to a restart or to a tag that matches no instance, only
//! costs a probe: the handler then
//! tries the instances in plan order until one does not answer "not
//! found" (see `handler`), and remembers the one that does.
//!
//! Carried across reloads by route (tags are names, not positions).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::Instance;

/// Slots in the table (8 bytes each, allocated on first use), in buckets
/// of [`WAYS`] adjacent slots.
pub const SLOTS: usize = 1 << 16;
const WAYS: usize = 2;
const BUCKETS: usize = SLOTS / WAYS;
/// Low bits of an entry: the instance's name tag; the rest: the id's.
const TAG_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

#[derive(Debug, Default)]
pub struct ResponseAffinity {
    slots: OnceLock<Box<[AtomicU64]>>,
}

/// One hash for every worker and every reload (fixed seeds).
fn hash(bytes: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(
        0x7269_6e67_7761_7931,
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
    )
    .hash_one(bytes)
}

/// An instance's tag in the table (computed once, when it is compiled).
pub fn instance_tag(name: &str) -> u64 {
    hash(name.as_bytes()) & TAG_MASK
}

impl ResponseAffinity {
    fn slots(&self) -> &[AtomicU64] {
        self.slots
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect())
    }

    /// The first slot of `id`'s bucket and what its entry for the
    /// instance tagged `tag` would hold.
    fn entry(id: &[u8], tag: u64) -> (usize, u64) {
        let h = hash(id);
        let bucket = (h as usize) & (BUCKETS - 1);
        (bucket * WAYS, (h & !TAG_MASK) | tag)
    }

    /// Whether `entry` is one for the id whose entries look like `like`.
    fn same_id(entry: u64, like: u64) -> bool {
        entry != 0 && (entry & !TAG_MASK) == (like & !TAG_MASK)
    }

    /// Remembers that `instance` holds `id`.
    pub fn remember(&self, id: &[u8], instance: &Instance) {
        self.remember_tag(id, instance.affinity_tag);
    }

    fn remember_tag(&self, id: &[u8], tag: u64) {
        if id.is_empty() {
            return;
        }
        let (first, entry) = Self::entry(id, tag);
        let bucket = &self.slots()[first..first + WAYS];
        // The newest first: the one it replaces moves to the second slot,
        // unless it is this id's own older entry. (Two workers remembering
        // into one bucket at once may lose an entry: a probe later.)
        let newest = bucket[0].load(Ordering::Relaxed);
        if !Self::same_id(newest, entry) {
            bucket[1].store(newest, Ordering::Relaxed);
        }
        bucket[0].store(entry, Ordering::Relaxed);
    }

    /// The instance (index into `instances`) remembered for `id`.
    pub fn recall(&self, id: &[u8], instances: &[Instance]) -> Option<usize> {
        let tag = self.recall_tag(id)?;
        instances.iter().position(|i| i.affinity_tag == tag)
    }

    fn recall_tag(&self, id: &[u8]) -> Option<u64> {
        let slots = self.slots.get()?;
        let (first, like) = Self::entry(id, 0);
        slots[first..first + WAYS]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .find(|&e| Self::same_id(e, like))
            .map(|e| e & TAG_MASK)
    }

    /// Forgets `id` (deleted), if `instance` was remembered for it.
    pub fn forget(&self, id: &[u8], instance: &Instance) {
        self.forget_tag(id, instance.affinity_tag);
    }

    fn forget_tag(&self, id: &[u8], tag: u64) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let (first, entry) = Self::entry(id, tag);
        for slot in &slots[first..first + WAYS] {
            let _ = slot.compare_exchange(entry, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_keeps_ids_apart() {
        let a = ResponseAffinity::default();
        let (alpha, beta) = (instance_tag("alpha"), instance_tag("beta"));
        assert!(a.slots.get().is_none(), "nothing allocated before use");
        a.remember_tag(b"resp_1", alpha);
        a.remember_tag(b"resp_2", beta);
        let (s1, e1) = ResponseAffinity::entry(b"resp_1", alpha);
        let (s2, e2) = ResponseAffinity::entry(b"resp_2", beta);
        assert_eq!(a.slots()[s1].load(Ordering::Relaxed), e1);
        assert_eq!(a.slots()[s2].load(Ordering::Relaxed), e2);
        assert_eq!(e1 & TAG_MASK, alpha);
        // Another id in the same slot is not taken for this one.
        let (s3, e3) = ResponseAffinity::entry(b"resp_3", alpha);
        assert_ne!(e3 & !TAG_MASK, e1 & !TAG_MASK);
        let _ = s3;
        // Forgetting needs the instance that holds it.
        a.forget_tag(b"resp_1", beta);
        assert_eq!(a.slots()[s1].load(Ordering::Relaxed), e1);
        a.forget_tag(b"resp_1", alpha);
        assert_eq!(a.slots()[s1].load(Ordering::Relaxed), 0);
        a.remember_tag(b"", alpha);
    }

    /// Ids that land on one bucket: the two newest are kept, whichever
    /// instance holds them; remembering an id again does not push the
    /// other out; a forgotten one leaves the other in place.
    #[test]
    fn a_bucket_keeps_its_two_newest_ids() {
        let (alpha, beta, gamma) = (
            instance_tag("alpha"),
            instance_tag("beta"),
            instance_tag("gamma"),
        );
        let a = ResponseAffinity::default();
        let bucket = ResponseAffinity::entry(b"resp_0", 0).0;
        let ids: Vec<Vec<u8>> = (1..)
            .map(|i| format!("resp_{i}").into_bytes())
            .filter(|id| ResponseAffinity::entry(id, 0).0 == bucket)
            .take(3)
            .collect();
        let (x, y, z) = (&ids[0][..], &ids[1][..], &ids[2][..]);
        a.remember_tag(x, alpha);
        a.remember_tag(y, beta);
        assert_eq!(
            (a.recall_tag(x), a.recall_tag(y)),
            (Some(alpha), Some(beta))
        );
        a.remember_tag(y, gamma);
        assert_eq!(
            (a.recall_tag(x), a.recall_tag(y)),
            (Some(alpha), Some(gamma))
        );
        a.remember_tag(z, alpha);
        assert_eq!(a.recall_tag(x), None, "the oldest of three goes");
        assert_eq!(
            (a.recall_tag(y), a.recall_tag(z)),
            (Some(gamma), Some(alpha))
        );
        a.forget_tag(y, gamma);
        assert_eq!((a.recall_tag(y), a.recall_tag(z)), (None, Some(alpha)));
        a.forget_tag(z, alpha);
        assert_eq!(a.recall_tag(z), None);
    }
}
