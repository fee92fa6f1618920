//! Reads back criterion's estimates of this run, to print the figures the benches compare.

use std::path::Path;

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
