//! Reading the plugins dir, for the commands that serve or describe what is in it.

use crate::loader;
use std::path::Path;

/// Loads every plugin in `dir`, logging one line per file that cannot be used; an error when
/// nothing loads.
pub(super) fn load_plugins(dir: &Path) -> Result<Vec<loader::LoadedPlugin>, String> {
    let (plugins, errors) = read_plugins_dir(dir)?;
    for error in &errors {
        tracing::error!("skipping {error}");
    }
    if plugins.is_empty() {
        return Err(format!("no plugin could be loaded from {}", dir.display()));
    }
    Ok(plugins)
}

type DirContents = (Vec<loader::LoadedPlugin>, Vec<loader::LoadError>);

pub(super) fn read_plugins_dir(dir: &Path) -> Result<DirContents, String> {
    loader::load_dir(dir)
        .map_err(|error| format!("cannot read plugins dir {}: {error}", dir.display()))
}
