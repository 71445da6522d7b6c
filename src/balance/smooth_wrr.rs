//! Smooth weighted round robin (nginx's): weights 5,1,1 give a,a,b,a,c,a,a.

use super::Pick;
use std::sync::Mutex;

/// Per-group state of smooth WRR: each target's current weight. A tiny lock held
/// for a few additions per pick; targets that are not eligible keep their state
/// and do not count in the total, so every cycle of sum(weights) picks of the
/// eligible targets gives each exactly its weight.
#[derive(Debug)]
pub struct SmoothWeightedRoundRobin {
    current: Mutex<Vec<i64>>,
}

impl SmoothWeightedRoundRobin {
    /// State for `n` targets, all current weights 0.
    pub fn new(n: usize) -> Self {
        SmoothWeightedRoundRobin {
            current: Mutex::new(vec![0; n]),
        }
    }
}

impl Pick for SmoothWeightedRoundRobin {
    fn pick(
        &self,
        n: usize,
        weight: impl Fn(usize) -> u32,
        _outstanding: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() < n {
            current.resize(n, 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..n {
            let w = weight(i) as i64;
            if w == 0 {
                continue;
            }
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u32], picks: usize) -> Vec<usize> {
        let wrr = SmoothWeightedRoundRobin::new(weights.len());
        (0..picks)
            .map(|_| wrr.pick(weights.len(), |i| weights[i], |_| 0).unwrap())
            .collect()
    }

    #[test]
    fn five_one_one_is_smooth() {
        // a,a,b,a,c,a,a — repeating.
        let expected = [0, 0, 1, 0, 2, 0, 0];
        let seq = sequence(&[5, 1, 1], 21);
        for cycle in seq.chunks(7) {
            assert_eq!(cycle, expected);
        }
    }

    #[test]
    fn each_cycle_gives_exact_weights() {
        let weights = [3, 0, 7, 1, 4];
        let total: u32 = weights.iter().sum();
        let seq = sequence(&weights, total as usize * 5);
        for cycle in seq.chunks(total as usize) {
            for (i, w) in weights.iter().enumerate() {
                assert_eq!(
                    cycle.iter().filter(|&&p| p == i).count(),
                    *w as usize,
                    "target {i}"
                );
            }
        }
    }

    #[test]
    fn no_eligible_target() {
        let wrr = SmoothWeightedRoundRobin::new(2);
        assert_eq!(wrr.pick(2, |_| 0, |_| 0), None);
        assert_eq!(wrr.pick(0, |_| 1, |_| 0), None);
    }

    #[test]
    fn ineligible_target_is_skipped_and_others_keep_proportion() {
        let wrr = SmoothWeightedRoundRobin::new(3);
        let mut counts = [0; 3];
        for _ in 0..40 {
            counts[wrr
                .pick(3, |i| [1, 2, 2][i] * (i != 1) as u32, |_| 0)
                .unwrap()] += 1;
        }
        assert_eq!(counts, [13, 0, 27]);
    }
}
