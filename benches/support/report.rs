//! Reads back criterion's estimates of this run, to print the figures the benches compare.

use std::path::Path;
use std::time::Duration;

use criterion::Criterion;

/// Runs `bench` under criterion with these times (what `criterion_group!` and
/// `criterion_main!` would do, command-line filters included), then prints `summary`.
pub(crate) fn run(
    warm_up: Duration,
    measurement: Duration,
    bench: fn(&mut Criterion),
    summary: fn(),
) {
    let mut criterion = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    summary();
}

/// The mean time, in nanoseconds, criterion measured for `group/id` in this run.
pub(crate) fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Prints each of `names` measured in `group` as its mean time and its ratio to `base`'s,
/// under `heading` (nothing if `base` was not measured in this run).
// Each bench compiles this module on its own, and not every one prints ratios to one base.
#[allow(dead_code)]
pub(crate) fn print_ratios(group: &str, names: &[&str], base: &str, heading: &str) {
    let Some(base) = mean_ns(group, base) else {
        return;
    };
    println!("\n{group}: {heading}");
    for name in names {
        if let Some(ns) = mean_ns(group, name) {
            println!("  {name:<26} {ns:>8.1} ns  {:>5.2}x", ns / base);
        }
    }
}
