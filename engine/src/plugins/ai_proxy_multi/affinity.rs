//! Which instance holds a stored Responses API response.
//!
//! OpenAI keeps a response (`store`, the default) in the account that
//! made it: a follow-up naming it (`previous_response_id`) and the
//! `…/responses/{id}` endpoints work only there. Balancing spreads a
//! conversation over instances, so the gateway remembers who answered:
//! a direct-mapped table of atomics shared by every worker — no lock, no
//! allocation after the first use, bounded memory — from a hash of the
//! response id to a tag of the instance's name. A slot holds the newest
//! id that hashed to it; an entry lost to a collision, a restart or a
//! tag that matches no instance only costs a probe: the handler then
//! tries the instances in plan order until one does not answer "not
//! found" (see `handler`), and remembers the one that does.
//!
//! Carried across reloads by route (tags are names, not positions).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::Instance;

/// Slots in the table (8 bytes each, allocated on first use).
pub const SLOTS: usize = 1 << 16;
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

    /// Where `id` would be and what its entry for the instance tagged
    /// `tag` would hold.
    fn entry(id: &[u8], tag: u64) -> (usize, u64) {
        let h = hash(id);
        let slot = (h as usize) & (SLOTS - 1);
        (slot, (h & !TAG_MASK) | tag)
    }

    /// Remembers that `instance` holds `id`.
    pub fn remember(&self, id: &[u8], instance: &Instance) {
        self.remember_tag(id, instance.affinity_tag);
    }

    fn remember_tag(&self, id: &[u8], tag: u64) {
        if id.is_empty() {
            return;
        }
        let (slot, entry) = Self::entry(id, tag);
        self.slots()[slot].store(entry, Ordering::Relaxed);
    }

    /// The instance (index into `instances`) remembered for `id`.
    pub fn recall(&self, id: &[u8], instances: &[Instance]) -> Option<usize> {
        let slots = self.slots.get()?;
        let h = hash(id);
        let entry = slots[(h as usize) & (SLOTS - 1)].load(Ordering::Relaxed);
        if entry == 0 || (entry & !TAG_MASK) != (h & !TAG_MASK) {
            return None;
        }
        let tag = entry & TAG_MASK;
        instances.iter().position(|i| i.affinity_tag == tag)
    }

    /// Forgets `id` (deleted), if `instance` was remembered for it.
    pub fn forget(&self, id: &[u8], instance: &Instance) {
        self.forget_tag(id, instance.affinity_tag);
    }

    fn forget_tag(&self, id: &[u8], tag: u64) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let (slot, entry) = Self::entry(id, tag);
        let _ = slots[slot].compare_exchange(entry, 0, Ordering::Relaxed, Ordering::Relaxed);
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
}
