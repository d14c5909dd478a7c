//! The query command's output (protocol.md §4): what Kong reads to learn a plugin's name,
//! priority, version, phases and schema.

use super::plugins_dir::{load_plugins, read_plugins_dir};
use crate::loader::{self, LoadedPlugin};
use serde_json::{json, Value};
use std::path::Path;

/// The protocol the dump tells Kong to speak (its `"Protocol"` key, process.lua: absent means
/// MsgPack:1). Kong picks its client by it: `mp_rpc.lua` lets a request through when the host
/// cannot be reached, Kong 3.8+'s `pb_rpc.lua` answers it 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// "MsgPack:1": every Kong 3.x; fails open when the host is gone.
    #[value(name = "msgpack")]
    MsgPack,
    /// "ProtoBuf:1": fails closed (500) when the host is gone on Kong 3.8+, open before.
    #[value(name = "protobuf")]
    ProtoBuf,
}

impl Protocol {
    /// The name Kong knows it by.
    pub fn kong_name(self) -> &'static str {
        match self {
            Protocol::MsgPack => "MsgPack:1",
            Protocol::ProtoBuf => "ProtoBuf:1",
        }
    }

    /// The `--protocol` value.
    pub fn flag(self) -> &'static str {
        match self {
            Protocol::MsgPack => "msgpack",
            Protocol::ProtoBuf => "protobuf",
        }
    }
}

/// `{"Protocol": "MsgPack:1" | "ProtoBuf:1", "Plugins": [...]}`: accepted by Kong 3.0 through
/// 3.9+ (ProtoBuf:1 from 3.8). Kong 3.9+ registers only the first plugin, so a 3.9 query
/// command dumps exactly one.
pub fn dump<'a>(plugins: impl IntoIterator<Item = &'a LoadedPlugin>, protocol: Protocol) -> Value {
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
    json!({ "Protocol": protocol.kong_name(), "Plugins": plugins })
}

/// `kong-rust-host dump`: one plugin found by name, or every plugin in the dir.
pub(super) fn run(
    name: Option<&str>,
    plugins_dir: &Path,
    protocol: Protocol,
) -> Result<(), String> {
    let plugins = match name {
        Some(name) => vec![find_plugin(name, plugins_dir)?],
        None => load_plugins(plugins_dir)?,
    };
    println!("{}", dump(&plugins, protocol));
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
