//! What the benchmark and the soak run share: the servers under test and Kong's side of the
//! load; the benchmark's chart and host checks.

pub mod chart;
pub mod checks;
pub mod load;
pub mod server;

use std::path::{Path, PathBuf};

/// A path under the workspace root this binary was built from, or under the current dir when
/// that tree is gone (e.g. the binary was copied elsewhere).
pub fn workspace_path(rel: &str) -> PathBuf {
    match Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        Some(root) if root.join("Cargo.toml").exists() => root.join(rel),
        _ => PathBuf::from(rel),
    }
}

/// The median (mean of the middle two for an even count); `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}
