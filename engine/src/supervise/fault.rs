//! The fault hook of debug builds: `RINGWAY_INJECT_PANIC=name=count,…`
//! (names as in [`Component::name`]) makes [`fault`] panic at a
//! component's fault point that many times, so tests can show through the
//! binary that every supervised part comes back. Release builds have no
//! hook: [`fault`] is an empty inline function there.

use super::Component;

/// A component's fault point (see the module doc).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn fault(_: Component) {}

/// A component's fault point (see the module doc).
#[cfg(debug_assertions)]
pub fn fault(c: Component) {
    use std::sync::atomic::Ordering;
    let left = &budgets()[c as usize];
    if left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        panic!("injected fault in {}", c.name());
    }
}

#[cfg(debug_assertions)]
fn budgets() -> &'static [std::sync::atomic::AtomicU32; Component::ALL.len()] {
    use std::sync::atomic::AtomicU32;
    static BUDGETS: std::sync::OnceLock<[AtomicU32; Component::ALL.len()]> =
        std::sync::OnceLock::new();
    BUDGETS.get_or_init(|| {
        let b = [const { AtomicU32::new(0) }; Component::ALL.len()];
        let spec = std::env::var("RINGWAY_INJECT_PANIC").unwrap_or_default();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (name, n) = item.split_once('=').unwrap_or((item, "1"));
            match (Component::by_name(name.trim()), n.trim().parse()) {
                (Some(c), Ok(n)) => b[c as usize].store(n, std::sync::atomic::Ordering::Relaxed),
                _ => tracing::warn!("RINGWAY_INJECT_PANIC: `{item}` names no component"),
            }
        }
        b
    })
}
