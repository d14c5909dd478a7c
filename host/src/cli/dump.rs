//! The query command's output (protocol.md §4): what Kong reads to learn a plugin's name,
//! priority, version, phases and schema.

use super::plugins_dir::{load_plugins, read_plugins_dir};
use crate::{
    cli::dump,
    loader::{self, LoadedPlugin},
};
use serde_json::{json, Value};
use std::path::Path;

/// `{"Protocol": "MsgPack:1", "Plugins": [...]}`: accepted by Kong 3.0 through 3.9+. Kong 3.9+
/// registers only the first plugin, so a 3.9 query command dumps exactly one.
pub fn dump<'a>(plugins: impl IntoIterator<Item = &'a LoadedPlugin>) -> Value {
    let plugins: Vec<Value> = plugins
        .into_iter()
        .map(|plugin| {
            json!({
                "Name": plugin.name,
                "Version": plugin.version,
                "Priority": plugin.priority,
                "Phases": plugin.phases.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "Schema": plugin.schema,
            })
        })
        .collect();
    json!({ "Protocol": "MsgPack:1", "Plugins": plugins })
}

/// `kong-rust-host dump`: one plugin found by name, or every plugin in the dir.
pub(super) fn run(name: Option<&str>, plugins_dir: &Path) -> Result<(), String> {
    let plugins = match name {
        Some(name) => vec![find_plugin(name, plugins_dir)?],
        None => load_plugins(plugins_dir)?,
    };
    println!("{}", dump::dump(&plugins));
    Ok(())
}

/// Finds one plugin by name, trying the file names a cargo build gives it before loading the
/// whole directory: Kong runs the query command once per plugin at every start.
fn find_plugin(name: &str, plugins_dir: &Path) -> Result<loader::LoadedPlugin, String> {
    let stem = name.replace('-', "_");
    for candidate in [
        format!("lib{stem}.so"),
        format!("{name}.so"),
        format!("{stem}.so"),
    ] {
        let path = plugins_dir.join(candidate);
        if path.is_file() {
            if let Ok(plugin) = loader::load_file(&path) {
                if plugin.name == name {
                    return Ok(plugin);
                }
            }
        }
    }
    let (plugins, errors) = read_plugins_dir(plugins_dir)?;
    plugins.into_iter().find(|p| p.name == name).ok_or_else(|| {
        let skipped: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "plugin {name} not found in {}{}",
            plugins_dir.display(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!("; files that failed to load: {}", skipped.join("; "))
            }
        )
    })
}
