//! The query command's output (protocol.md §4): what Kong reads to learn a plugin's name,
//! priority, version, phases and schema.

use crate::loader::LoadedPlugin;
use serde_json::{json, Value};

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
