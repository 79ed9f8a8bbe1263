//! Smooth weighted round robin (nginx's algorithm), precomputed.
//!
//! The whole cycle is computed once at compile time: for weights 8:2 the
//! cycle has 5 entries after dividing by the GCD, and any window of 10
//! consecutive tickets holds exactly 8 and 2 picks. Picking is then
//! `cycle[ticket % len]`, so a single atomic ticket shared by all workers
//! gives an exact global split with one `fetch_add`, and a per-worker
//! counter gives nginx's per-worker behaviour.

/// Longest cycle kept; larger weight sums are scaled down proportionally.
const MAX_CYCLE: u64 = 1 << 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrrCycle {
    order: Box<[u32]>,
}

impl WrrCycle {
    /// Builds the cycle for `weights` (index = member). Members with weight 0
    /// are never picked, unless every weight is 0, in which case all members
    /// share equally.
    pub fn new(weights: &[u32]) -> WrrCycle {
        if weights.is_empty() {
            return WrrCycle::default();
        }
        let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x)).collect();
        if w.iter().all(|&x| x == 0) {
            w.iter_mut().for_each(|x| *x = 1);
        }
        let g = w.iter().copied().filter(|&x| x > 0).fold(0, gcd);
        w.iter_mut().for_each(|x| *x /= g.max(1));
        let mut total: u64 = w.iter().sum();
        if total > MAX_CYCLE {
            // Keep every positive weight positive while shrinking.
            let scale = total as f64 / MAX_CYCLE as f64;
            w.iter_mut()
                .filter(|x| **x > 0)
                .for_each(|x| *x = ((*x as f64 / scale).round() as u64).max(1));
            total = w.iter().sum();
        }
        let mut current = vec![0i64; w.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = usize::MAX;
            for (i, &wi) in w.iter().enumerate() {
                if wi == 0 {
                    continue;
                }
                current[i] += wi as i64;
                if best == usize::MAX || current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total as i64;
            order.push(best as u32);
        }
        WrrCycle {
            order: order.into_boxed_slice(),
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The member for `ticket`.
    #[inline]
    pub fn pick(&self, ticket: u64) -> Option<usize> {
        if self.order.is_empty() {
            return None;
        }
        Some(self.order[(ticket % self.order.len() as u64) as usize] as usize)
    }

    /// Members in the order tickets `ticket, ticket+1, …` visit them, first
    /// occurrence only: the fallback order after the picked member.
    pub fn walk(&self, ticket: u64) -> impl Iterator<Item = usize> + '_ {
        let n = self.order.len() as u64;
        (0..n).map(move |k| self.order[((ticket + k) % n.max(1)) as usize] as usize)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &WrrCycle, start: u64, n: u64, members: usize) -> Vec<u32> {
        let mut v = vec![0; members];
        for t in start..start + n {
            v[c.pick(t).unwrap()] += 1;
        }
        v
    }

    #[test]
    fn eight_two_is_exact_over_any_ten() {
        let c = WrrCycle::new(&[8, 2]);
        assert_eq!(c.len(), 5);
        for start in 0..20 {
            assert_eq!(
                counts(&c, start, 10, 2),
                vec![8, 2],
                "window starting at {start}"
            );
        }
    }

    #[test]
    fn smooth_interleaving() {
        let c = WrrCycle::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|t| c.pick(t).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weights() {
        let c = WrrCycle::new(&[0, 3]);
        assert!((0..10).all(|t| c.pick(t) == Some(1)));
        let all_zero = WrrCycle::new(&[0, 0]);
        assert_eq!(counts(&all_zero, 0, 10, 2), vec![5, 5]);
        assert_eq!(WrrCycle::new(&[]).pick(3), None);
    }

    #[test]
    fn huge_weights_are_scaled_but_keep_members() {
        let c = WrrCycle::new(&[1_000_000, 1, 999_983]);
        assert!(c.len() as u64 <= MAX_CYCLE + 3);
        let v = counts(&c, 0, c.len() as u64, 3);
        assert!(v[1] >= 1);
        assert!((v[0] as f64 / v[2] as f64 - 1.0).abs() < 0.01);
    }
}
