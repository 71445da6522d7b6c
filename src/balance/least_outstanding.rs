//! Least outstanding requests: fewest in-flight requests per unit of weight.

use super::Pick;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks the target with the lowest outstanding/weight; ties are broken round
/// robin by starting the scan one place further each time.
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    next: AtomicUsize,
}

impl Pick for LeastOutstanding {
    fn pick(
        &self,
        n: usize,
        weight: impl Fn(usize) -> u32,
        outstanding: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u64)> = None; // (index, outstanding, weight)
        for k in 0..n {
            let i = (start + k) % n;
            let w = weight(i) as u64;
            if w == 0 {
                continue;
            }
            let o = outstanding(i) as u64;
            // o / w < bo / bw, without division.
            if best.is_none_or(|(_, bo, bw)| o * bw < bo * w) {
                best = Some((i, o, w));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewest_outstanding_wins() {
        let lor = LeastOutstanding::default();
        let out = [5, 2, 9];
        for _ in 0..6 {
            assert_eq!(lor.pick(3, |_| 1, |i| out[i]), Some(1));
        }
    }

    #[test]
    fn weight_adjusted() {
        let lor = LeastOutstanding::default();
        // 4 in flight on weight 4 (1 per unit) beats 2 on weight 1.
        assert_eq!(lor.pick(2, |i| [4, 1][i], |i| [4, 2][i]), Some(0));
    }

    #[test]
    fn ties_rotate() {
        let lor = LeastOutstanding::default();
        let picks: Vec<_> = (0..6).map(|_| lor.pick(3, |_| 1, |_| 0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn zero_weight_never_picked() {
        let lor = LeastOutstanding::default();
        for _ in 0..5 {
            assert_eq!(lor.pick(2, |i| [0, 1][i], |i| [0, 100][i]), Some(1));
        }
        assert_eq!(lor.pick(2, |_| 0, |_| 0), None);
    }
}
