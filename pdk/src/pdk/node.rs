use super::{value, Bridge};
use crate::Result;
use rmpv::Value;
use serde::{
    de::{self, Visitor},
    Deserialize, Deserializer,
};
use std::{collections::BTreeMap, fmt};

/// `kong.node`: the Kong node serving the request.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    bridge: Bridge<'a>,
}

/// The unit of [`get_memory_stats`](Node::get_memory_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUnit {
    /// Bytes, as numbers.
    Bytes,
    /// KiB, as text (`"12.00 KiB"`).
    Kibibytes,
    /// MiB, as text.
    Mebibytes,
    /// GiB, as text.
    Gibibytes,
}

impl MemoryUnit {
    /// Kong's `unit` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryUnit::Bytes => "b",
            MemoryUnit::Kibibytes => "k",
            MemoryUnit::Mebibytes => "m",
            MemoryUnit::Gibibytes => "g",
        }
    }
}

/// One memory figure: a number of bytes, or text in the unit asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Memory {
    /// A number of bytes.
    Bytes(u64),
    /// Text in the unit asked for, e.g. `"1.50 MiB"`.
    Text(String),
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemoryVisitor;
        impl Visitor<'_> for MemoryVisitor {
            type Value = Memory;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a text like \"12.00 KiB\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Memory, E> {
                Ok(Memory::Bytes(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Memory, E> {
                Ok(Memory::Bytes(n as u64))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Memory, E> {
                Ok(Memory::Text(text.to_string()))
            }
        }
        deserializer.deserialize_any(MemoryVisitor)
    }
}

/// One `lua_shared_dict`'s memory; `err` instead of figures when Kong could not read them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SharedDictMemory {
    /// `allocated_slabs`, as Kong reports it.
    pub allocated_slabs: Option<Memory>,
    /// `capacity`, as Kong reports it.
    pub capacity: Option<Memory>,
    /// `err`, as Kong reports it.
    pub err: Option<String>,
}

/// One worker's Lua VM memory; `err` instead of figures when Kong could not read them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkerMemory {
    /// `http_allocated_gc`, as Kong reports it.
    pub http_allocated_gc: Option<Memory>,
    /// `pid`, as Kong reports it.
    pub pid: Option<u32>,
    /// `err`, as Kong reports it.
    pub err: Option<String>,
}

/// The node's memory use (`kong.node.get_memory_stats`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemoryStats {
    /// By dict name.
    #[serde(default)]
    pub lua_shared_dicts: BTreeMap<String, SharedDictMemory>,
    /// Per worker: `workers_lua_vms`, as Kong reports it.
    #[serde(default)]
    pub workers_lua_vms: Vec<WorkerMemory>,
}

impl<'a> Node<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Node { bridge }
    }

    /// The node's id (a UUID). Every phase.
    pub fn get_id(&self) -> Result<String> {
        self.bridge
            .call_as("kong.node.get_id", vec![], value::string)
    }

    /// The node's host name. Every phase.
    pub fn get_hostname(&self) -> Result<String> {
        self.bridge
            .call_as("kong.node.get_hostname", vec![], value::string)
    }

    /// Memory used by the shared dicts and the workers' Lua VMs, in `unit` (Kong's default:
    /// bytes) with `scale` decimals for the text units (Kong's default: 2). Every phase.
    pub fn get_memory_stats(
        &self,
        unit: Option<MemoryUnit>,
        scale: Option<u32>,
    ) -> Result<MemoryStats> {
        let args = value::with_optional(
            vec![],
            vec![
                (unit.map(|u| Value::from(u.as_str())), Value::from("b")),
                (scale.map(Value::from), Value::from(2)),
            ],
        );
        self.bridge
            .call_as("kong.node.get_memory_stats", args, value::decode)
    }
}
