//! Picking a target: the balancing algorithms, pure and unit-testable. They see
//! targets only as indices with an effective weight (0 = not eligible now) and an
//! outstanding-request count, so health, draining and slow start stay outside.

pub mod cookie;
mod least_outstanding;
mod smooth_wrr;
pub mod sticky;

pub use least_outstanding::LeastOutstanding;
pub use smooth_wrr::SmoothWeightedRoundRobin;

use crate::config::Algorithm;

/// One algorithm's choice among `n` targets.
pub trait Pick {
    /// The index of the chosen target, or `None` when every weight is 0.
    /// `weight(i)` is target i's effective weight now (0 = skip it);
    /// `outstanding(i)` its in-flight requests or open connections.
    fn pick(
        &self,
        n: usize,
        weight: impl Fn(usize) -> u32,
        outstanding: impl Fn(usize) -> u32,
    ) -> Option<usize>;
}

/// A group's balancer: one per target group per snapshot.
#[derive(Debug)]
pub enum Balancer {
    WeightedRoundRobin(SmoothWeightedRoundRobin),
    LeastOutstanding(LeastOutstanding),
}

impl Balancer {
    /// A fresh balancer for `n` targets.
    pub fn new(algorithm: Algorithm, n: usize) -> Self {
        match algorithm {
            Algorithm::WeightedRoundRobin => {
                Balancer::WeightedRoundRobin(SmoothWeightedRoundRobin::new(n))
            }
            Algorithm::LeastOutstandingRequests => {
                Balancer::LeastOutstanding(LeastOutstanding::default())
            }
        }
    }
}

impl Balancer {
    /// A pick under weights that stay `weights()` while `key` does (see
    /// [`SmoothWeightedRoundRobin::pick_cached`]); `None` when the algorithm
    /// keeps no such state (least outstanding requests reads live counts) or
    /// `weights()` is `None`: the caller then picks with [`Pick::pick`].
    pub fn pick_cached(
        &self,
        key: u64,
        n: usize,
        exclude: Option<usize>,
        weights: impl FnOnce() -> Option<Vec<u32>>,
    ) -> Option<Option<usize>> {
        match self {
            Balancer::WeightedRoundRobin(b) => b.pick_cached(key, n, exclude, weights),
            Balancer::LeastOutstanding(_) => None,
        }
    }
}

impl Pick for Balancer {
    fn pick(
        &self,
        n: usize,
        weight: impl Fn(usize) -> u32,
        outstanding: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        match self {
            Balancer::WeightedRoundRobin(b) => b.pick(n, weight, outstanding),
            Balancer::LeastOutstanding(b) => b.pick(n, weight, outstanding),
        }
    }
}
