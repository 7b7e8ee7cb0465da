//! Maglev table build: 100 equal-weight backends, M = 65537.
//!
//! `cargo bench -p lb-core --bench maglev`

use criterion::{Criterion, criterion_group, criterion_main};
use lb_core::select::maglev::{DEFAULT_TABLE_SIZE, Maglev, MaglevBackend};
use std::hint::black_box;
use std::time::Duration;

fn bench_build(c: &mut Criterion) {
    let names: Vec<String> = (0..100).map(|i| format!("backend-{i}")).collect();
    let backends: Vec<MaglevBackend<'_>> = names
        .iter()
        .map(|n| MaglevBackend { name: n, weight: 1 })
        .collect();
    let mut g = c.benchmark_group("maglev");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    g.bench_function("build_100_backends_m65537", |b| {
        b.iter(|| Maglev::build(DEFAULT_TABLE_SIZE, black_box(&backends)).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
