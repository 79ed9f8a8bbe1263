//! How a worker hands its series to the scrape thread without a lock: an
//! append-only list of fixed-size chunks. The worker is the only writer;
//! it fills the next slot (a `OnceLock`, written once, read with an
//! acquire load) and then publishes the new length with a release store,
//! so a reader that sees the length sees every slot before it. A new
//! chunk is published by swapping the (small) vector of chunk pointers
//! (`arc-swap`), once per [`CHUNK`] series. Nothing here runs per request:
//! only when a label set is seen for the first time, and when a reload
//! retires series ([`Published::replace`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

/// Series per chunk.
pub const CHUNK: usize = 256;

type Chunk<T> = Arc<[OnceLock<Arc<T>>]>;

/// One generation of the list.
struct List<T> {
    chunks: ArcSwap<Vec<Chunk<T>>>,
    len: AtomicUsize,
}

impl<T> List<T> {
    fn new() -> List<T> {
        List {
            chunks: ArcSwap::from_pointee(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Appends `item` (single writer: the owning worker).
    fn push(&self, item: Arc<T>) {
        let n = self.len.load(Ordering::Relaxed);
        let chunks = self.chunks.load();
        let chunk = match chunks.get(n / CHUNK) {
            Some(c) => c.clone(),
            None => {
                let c: Chunk<T> = (0..CHUNK).map(|_| OnceLock::new()).collect();
                let mut grown = Vec::with_capacity(chunks.len() + 1);
                grown.extend(chunks.iter().cloned());
                grown.push(c.clone());
                self.chunks.store(Arc::new(grown));
                c
            }
        };
        // The slot is new: only this writer sets it.
        let _ = chunk[n % CHUNK].set(item);
        self.len.store(n + 1, Ordering::Release);
    }

    fn for_each(&self, f: &mut dyn FnMut(&Arc<T>)) {
        let n = self.len.load(Ordering::Acquire);
        let chunks = self.chunks.load();
        for i in 0..n {
            if let Some(item) = chunks.get(i / CHUNK).and_then(|c| c[i % CHUNK].get()) {
                f(item);
            }
        }
    }
}

/// A worker's published items, read by the scrape thread.
pub struct Published<T> {
    current: ArcSwap<List<T>>,
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Published {
            current: ArcSwap::from_pointee(List::new()),
        }
    }
}

impl<T> std::fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("len", &self.current.load().len.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> Published<T> {
    /// Appends `item` (the owning worker only).
    pub fn push(&self, item: Arc<T>) {
        self.current.load().push(item);
    }

    /// Replaces the whole list (the owning worker, when a reload retires
    /// series): a scrape under way finishes with the old one.
    pub fn replace(&self, items: impl Iterator<Item = Arc<T>>) {
        let list = List::new();
        for i in items {
            list.push(i);
        }
        self.current.store(Arc::new(list));
    }

    /// Calls `f` with every published item (the scrape thread).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<T>)) {
        self.current.load_full().for_each(&mut f);
    }

    /// How many items are published.
    pub fn len(&self) -> usize {
        self.current.load().len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_appear_in_order_across_chunks_and_a_replace_starts_over() {
        let p: Published<usize> = Published::default();
        assert!(p.is_empty());
        for i in 0..(CHUNK * 2 + 3) {
            p.push(Arc::new(i));
        }
        let mut seen = Vec::new();
        p.for_each(|i| seen.push(**i));
        assert_eq!(seen, (0..CHUNK * 2 + 3).collect::<Vec<_>>());
        p.replace([7usize, 9].into_iter().map(Arc::new));
        let mut seen = Vec::new();
        p.for_each(|i| seen.push(**i));
        assert_eq!(seen, vec![7, 9]);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn a_reader_on_another_thread_sees_a_prefix_while_the_writer_appends() {
        let p: Arc<Published<usize>> = Arc::default();
        let reader = {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                while last < 5000 {
                    let mut seen = Vec::new();
                    p.for_each(|i| seen.push(**i));
                    assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>());
                    assert!(seen.len() >= last);
                    last = seen.len();
                }
            })
        };
        for i in 0..5000 {
            p.push(Arc::new(i));
        }
        reader.join().unwrap();
    }
}
