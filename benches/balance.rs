//! Hot-path micro-benchmarks of target selection.

use criterion::{Criterion, criterion_group, criterion_main};
use edgelb::balance::{Balancer, Pick};
use edgelb::config::Algorithm;
use std::hint::black_box;

fn bench_pick(c: &mut Criterion) {
    for n in [3usize, 10, 100] {
        let weights: Vec<u32> = (0..n).map(|i| (i % 7 + 1) as u32).collect();
        let outstanding: Vec<u32> = (0..n).map(|i| (i % 5) as u32).collect();
        let wrr = Balancer::new(Algorithm::WeightedRoundRobin, n);
        c.bench_function(&format!("smooth_wrr_pick/{n}_targets"), |b| {
            b.iter(|| wrr.pick(black_box(n), |i| weights[i], |i| outstanding[i]))
        });
        let lor = Balancer::new(Algorithm::LeastOutstandingRequests, n);
        c.bench_function(&format!("least_outstanding_pick/{n}_targets"), |b| {
            b.iter(|| lor.pick(black_box(n), |i| weights[i], |i| outstanding[i]))
        });
    }
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
