//! Smooth weighted round robin (nginx's): weights 5,1,1 give a,a,b,a,c,a,a.
//!
//! nginx's form adds every target's weight to its current weight at each pick,
//! which costs a pass over all targets: fine for ten targets, 10,000 of them
//! cost more than the rest of the request. While the weights stay the same
//! ([`SmoothWeightedRoundRobin::pick_cached`]) the same sequence is kept
//! lazily: after `k` picks target `i`'s current weight is `base[i] + k * w[i]`,
//! so only the picked target's `base` changes, and among targets of one weight
//! the highest `base` (lowest index on a tie) leads. A pick looks at one target
//! per distinct weight: O(distinct weights × log n) instead of O(n).

use super::Pick;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Per-group state of smooth WRR: each target's current weight. A tiny lock held
/// for one pick; targets that are not eligible keep their state and do not count
/// in the total, so every cycle of sum(weights) picks of the eligible targets
/// gives each exactly its weight.
#[derive(Debug)]
pub struct SmoothWeightedRoundRobin {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Each target's current weight (nginx's), when `lazy` does not hold it.
    current: Vec<i64>,
    /// The same, kept lazily under weights that have not changed.
    lazy: Option<Lazy>,
}

impl State {
    /// Makes `current` the truth again (before a pick with other weights).
    fn materialize(&mut self) {
        if let Some(lazy) = self.lazy.take() {
            for (i, c) in self.current.iter_mut().enumerate() {
                *c = lazy.base[i] + lazy.picks * lazy.weights[i];
            }
        }
    }
}

/// The current weights under fixed `weights`, after `picks` picks:
/// `base[i] + picks * weights[i]`.
#[derive(Debug)]
struct Lazy {
    /// What the caller said the weights depend on.
    key: u64,
    weights: Vec<i64>,
    total: i64,
    picks: i64,
    base: Vec<i64>,
    /// Targets with a weight, grouped by it, each group in pick order (not
    /// kept for a small group, which is walked: `base` is then the current
    /// weights themselves and `picks` stays 0).
    classes: BTreeMap<i64, BTreeSet<(Reverse<i64>, usize)>>,
    walked: bool,
}

/// Up to this many targets a pick walks the cached weights (nginx's form):
/// cheaper than keeping the classes in order (measured: +1,600 instructions
/// per request with one target).
const WALK_UP_TO: usize = 32;

impl Lazy {
    fn new(key: u64, current: &[i64], weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let walked = weights.len() <= WALK_UP_TO;
        let mut classes: BTreeMap<i64, BTreeSet<(Reverse<i64>, usize)>> = BTreeMap::new();
        for (i, &w) in weights.iter().enumerate() {
            if w > 0 && !walked {
                classes
                    .entry(w)
                    .or_default()
                    .insert((Reverse(current[i]), i));
            }
        }
        Lazy {
            key,
            total: weights.iter().sum(),
            weights,
            picks: 0,
            base: current.to_vec(),
            classes,
            walked,
        }
    }

    /// Moves target `i`'s base by `delta`, keeping its class in order.
    fn shift(&mut self, i: usize, delta: i64) {
        let class = self
            .classes
            .get_mut(&self.weights[i])
            .expect("a target with a weight has a class");
        class.remove(&(Reverse(self.base[i]), i));
        self.base[i] += delta;
        class.insert((Reverse(self.base[i]), i));
    }

    /// nginx's pick, with `exclude` (if it has a weight) sitting this one out.
    fn pick(&mut self, exclude: Option<usize>) -> Option<usize> {
        if self.walked {
            return walk(&mut self.base, |i| {
                if Some(i) == exclude {
                    0
                } else {
                    self.weights[i]
                }
            });
        }
        let exclude = exclude.filter(|&e| self.weights.get(e).is_some_and(|&w| w > 0));
        self.picks += 1;
        let mut best: Option<(i64, usize)> = None;
        for (&w, class) in &self.classes {
            let Some(&(Reverse(base), i)) = class.iter().find(|(_, i)| Some(*i) != exclude) else {
                continue;
            };
            let current = base + self.picks * w;
            if best.is_none_or(|(c, b)| current > c || (current == c && i < b)) {
                best = Some((current, i));
            }
        }
        let mut total = self.total;
        if let Some(e) = exclude {
            // Not added to this time: its current weight stays where it was.
            self.shift(e, -self.weights[e]);
            total -= self.weights[e];
        }
        let (_, b) = best?;
        self.shift(b, -total);
        Some(b)
    }
}

impl SmoothWeightedRoundRobin {
    /// State for `n` targets, all current weights 0.
    pub fn new(n: usize) -> Self {
        SmoothWeightedRoundRobin {
            state: Mutex::new(State {
                current: vec![0; n],
                lazy: None,
            }),
        }
    }

    /// The same pick as [`Pick::pick`] over `n` targets whose weights are
    /// `weights()` (every target's, `exclude` left out for this pick only) for as
    /// long as the caller's `key` stays the same; `weights` is asked again only
    /// when it changes. `None` when `weights()` is `None` (the weights are
    /// changing by themselves: the caller picks with [`Pick::pick`]).
    pub fn pick_cached(
        &self,
        key: u64,
        n: usize,
        exclude: Option<usize>,
        weights: impl FnOnce() -> Option<Vec<u32>>,
    ) -> Option<Option<usize>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = state
            .lazy
            .as_ref()
            .is_some_and(|l| l.key == key && l.base.len() == n);
        if !fresh {
            let weights = weights()?;
            debug_assert_eq!(weights.len(), n);
            state.materialize();
            state.current.resize(n, 0);
            let lazy = Lazy::new(key, &state.current, weights);
            state.lazy = Some(lazy);
        }
        state.lazy.as_mut().map(|l| l.pick(exclude))
    }
}

impl Pick for SmoothWeightedRoundRobin {
    fn pick(
        &self,
        n: usize,
        weight: impl Fn(usize) -> u32,
        _outstanding: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.materialize();
        let current = &mut state.current;
        if current.len() < n {
            current.resize(n, 0);
        }
        walk(&mut current[..n], |i| i64::from(weight(i)))
    }
}

/// nginx's step over every target's `current` weight: each eligible one
/// (weight > 0) gains its weight, the highest (lowest index on a tie) is
/// picked and loses the total.
fn walk(current: &mut [i64], weight: impl Fn(usize) -> i64) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for i in 0..current.len() {
        let w = weight(i);
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

    /// A small deterministic generator (no dependency for a test).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn cached_picks_are_nginx_s_picks_through_exclusions_and_weight_changes() {
        let mut rng = Lcg(7);
        for round in 0..200 {
            // Small groups are walked, larger ones kept in classes: both sizes.
            let n = 1 + rng.below(80) as usize;
            let naive = SmoothWeightedRoundRobin::new(n);
            let cached = SmoothWeightedRoundRobin::new(n);
            let mut weights: Vec<u32> = (0..n).map(|_| rng.below(4) as u32).collect();
            let mut key = 0;
            for step in 0..300 {
                match rng.below(20) {
                    // The weights change (a health change, say): a new key.
                    0 => {
                        let i = rng.below(n as u64) as usize;
                        weights[i] = rng.below(6) as u32;
                        key += 1;
                    }
                    // A pick the caller makes the slow way (a ramp in progress).
                    1 => {
                        let a = naive.pick(n, |i| weights[i], |_| 0);
                        let b = cached.pick(n, |i| weights[i], |_| 0);
                        assert_eq!(a, b, "round {round} step {step}");
                        continue;
                    }
                    _ => {}
                }
                let exclude = (rng.below(5) == 0).then(|| rng.below(n as u64) as usize);
                let a = naive.pick(
                    n,
                    |i| if Some(i) == exclude { 0 } else { weights[i] },
                    |_| 0,
                );
                let b = cached
                    .pick_cached(key, n, exclude, || Some(weights.clone()))
                    .expect("weights given");
                assert_eq!(a, b, "round {round} step {step} weights {weights:?}");
            }
        }
    }

    #[test]
    fn cached_five_one_one_is_smooth_and_asks_the_weights_once() {
        let wrr = SmoothWeightedRoundRobin::new(3);
        let mut asked = 0;
        let seq: Vec<usize> = (0..14)
            .map(|_| {
                wrr.pick_cached(1, 3, None, || {
                    asked += 1;
                    Some(vec![5, 1, 1])
                })
                .unwrap()
                .unwrap()
            })
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(asked, 1);
        // No weights to keep: the caller is told to pick the slow way.
        assert_eq!(wrr.pick_cached(2, 3, None, || None), None);
    }
}
