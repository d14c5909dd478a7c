//! `plugin.GetStatus`'s reply: the reference servers' shape (docs/protocol.md §14) plus the
//! host's sharing counters, statistics and reclaimed events. Field order is the wire order:
//! `kong-rust-host status`, `doctor`, `wait-ready` and operators' scripts read it.

use crate::runtime::metrics::{self, PhaseSnapshot, PluginStats};
use kong_rust_abi::Phase;
use rmpv::Value;
use serde::{ser::SerializeMap, Serialize, Serializer};
use std::collections::BTreeMap;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Status<'a> {
    pub pid: u32,
    /// By plugin name.
    pub plugins: BTreeMap<&'a str, PluginStatus<'a>>,
    pub events_in_flight: usize,
    /// `nil` where the allocator cannot tell.
    pub allocated_bytes: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PluginStatus<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub path: String,
    /// Every live instance id, in id order.
    pub instances: Vec<InstanceStatus<'a>>,
    /// Distinct constructed instances: ids with the same config share one.
    pub live_instances: usize,
    pub constructed: u64,
    pub stats: Stats,
    pub reclaimed: Reclaimed,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceStatus<'a> {
    pub id: i64,
    pub name: &'a str,
    pub start_time: u64,
    /// The config as JSON text.
    pub config: String,
    /// Equal for ids that share one constructed instance.
    pub shared_instance: u64,
}

/// Per phase that saw an event: `{phase: {counter: n, …, "latency_us": {"le_<µs>": n, …,
/// "le_inf": n, "sum": µs}}}`, latency counts cumulative.
pub(crate) struct Stats(pub Vec<PhaseSnapshot>);

/// Events reclaimed because Kong never answered a PDK call: `{phase: {method: count}}`.
pub(crate) struct Reclaimed(pub Vec<(Phase, String, u64)>);

impl Status<'_> {
    /// As `rpc::result_reply` takes it. `rmpv` would encode structs as arrays, so the named
    /// encoding is read back into a value (GetStatus is an operator's call, not traffic).
    pub fn to_value(&self) -> Value {
        let encoded = rmp_serde::to_vec_named(self).expect("the status serializes");
        rmpv::decode::read_value(&mut encoded.as_slice()).expect("just encoded")
    }
}

impl Stats {
    pub fn of(stats: &PluginStats) -> Self {
        Stats(stats.snapshot())
    }
}

impl Reclaimed {
    pub fn of(stats: &PluginStats) -> Self {
        Reclaimed(stats.reclaimed_snapshot())
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .map(|phase| (phase.phase.as_str(), PhaseStats(phase))),
        )
    }
}

struct PhaseStats<'a>(&'a PhaseSnapshot);

impl Serialize for PhaseStats<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let phase = self.0;
        let mut map = serializer.serialize_map(Some(phase.counters.len() + 1))?;
        for (name, count) in &phase.counters {
            map.serialize_entry(name, count)?;
        }
        map.serialize_entry("latency_us", &Latency(phase))?;
        map.end()
    }
}

struct Latency<'a>(&'a PhaseSnapshot);

impl Serialize for Latency<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let phase = self.0;
        let buckets: Vec<(String, u64)> = metrics::BUCKETS_US
            .iter()
            .map(|bound| format!("le_{bound}"))
            .chain(["le_inf".to_string()])
            .zip(phase.cumulative_buckets.iter().copied())
            .collect();
        let mut map = serializer.serialize_map(Some(buckets.len() + 1))?;
        for (bound, count) in &buckets {
            map.serialize_entry(bound, count)?;
        }
        map.serialize_entry("sum", &phase.latency_sum_us)?;
        map.end()
    }
}

impl Serialize for Reclaimed {
    /// The snapshot comes by phase then method, so each phase's methods are adjacent.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut phases: Vec<(&str, BTreeMap<&str, u64>)> = Vec::new();
        for (phase, method, count) in &self.0 {
            match phases.last_mut() {
                Some((last, methods)) if *last == phase.as_str() => {
                    methods.insert(method, *count);
                }
                _ => phases.push((phase.as_str(), BTreeMap::from([(method.as_str(), *count)]))),
            }
        }
        serializer.collect_map(phases)
    }
}
