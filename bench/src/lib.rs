//! What the benchmark and the soak run share: the host under test and Kong's side of the load.

pub mod host;
pub mod load;

use std::path::{Path, PathBuf};

/// A path under the workspace root this binary was built from, or under the current dir when
/// that tree is gone (e.g. the binary was copied elsewhere).
pub fn workspace_path(rel: &str) -> PathBuf {
    match Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        Some(root) if root.join("Cargo.toml").exists() => root.join(rel),
        _ => PathBuf::from(rel),
    }
}
