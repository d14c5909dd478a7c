//! Per-plugin counters and latency histograms, updated with relaxed atomics on the per-call
//! path (no lock), read by `plugin.GetStatus` and the Prometheus endpoint.

use kong_rust_abi::Phase;
use parking_lot::Mutex;
use prometheus_client::{
    collector::Collector,
    encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};
use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the latency buckets, in microseconds (the last bucket is +Inf).
pub const BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];

/// How an event ended, for counting.
#[derive(Clone, Copy)]
pub enum Ending {
    Returned,
    /// The handler called `kong.response.exit`/`error`.
    Exited,
    Failed,
    Panicked,
    /// Kong stopped answering, or the handler overran the deadline.
    Abandoned,
    /// Refused at the plugin's event limit.
    Refused,
}

#[derive(Default)]
struct PhaseStats {
    events: AtomicU64,
    pdk_calls: AtomicU64,
    exits: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    abandoned: AtomicU64,
    refused: AtomicU64,
    /// Event durations (first HandleEvent to the final answer): one count per bucket, +Inf last.
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// One plugin's statistics, one set per phase.
#[derive(Default)]
pub struct PluginStats {
    phases: [PhaseStats; 6],
    /// Events reclaimed because Kong never answered a PDK call, by phase (index) and method.
    /// Locked only when an event is reclaimed, never on the per-call path.
    reclaimed: Mutex<BTreeMap<(usize, String), u64>>,
}

fn index(phase: Phase) -> usize {
    Phase::ALL
        .iter()
        .position(|p| *p == phase)
        .expect("every phase is in ALL")
}

impl PluginStats {
    pub fn pdk_call(&self, phase: Phase) {
        self.phases[index(phase)]
            .pdk_calls
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished event and how long it took.
    pub fn event(&self, phase: Phase, ending: Ending, took: Duration) {
        let stats = &self.phases[index(phase)];
        stats.events.fetch_add(1, Ordering::Relaxed);
        let counter = match ending {
            Ending::Returned => None,
            Ending::Exited => Some(&stats.exits),
            Ending::Failed => Some(&stats.errors),
            Ending::Panicked => Some(&stats.panics),
            Ending::Abandoned => Some(&stats.abandoned),
            Ending::Refused => Some(&stats.refused),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS_US.len());
        stats.latency[bucket].fetch_add(1, Ordering::Relaxed);
        stats.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts an event reclaimed waiting for Kong's answer to PDK `method`; returns the count
    /// for that phase and method so far.
    pub fn reclaimed(&self, phase: Phase, method: &str) -> u64 {
        let mut reclaimed = self.reclaimed.lock();
        let count = reclaimed
            .entry((index(phase), method.to_string()))
            .or_default();
        *count += 1;
        *count
    }

    /// (phase, method, count) of every reclaimed call, by phase then method.
    pub fn reclaimed_snapshot(&self) -> Vec<(Phase, String, u64)> {
        self.reclaimed
            .lock()
            .iter()
            .map(|((phase, method), count)| (Phase::ALL[*phase], method.clone(), *count))
            .collect()
    }

    /// Per phase that saw any event: (phase, counters by name, cumulative latency buckets, sum).
    pub fn snapshot(&self) -> Vec<PhaseSnapshot> {
        Phase::ALL
            .iter()
            .zip(&self.phases)
            .filter(|(_, stats)| stats.events.load(Ordering::Relaxed) > 0)
            .map(|(phase, stats)| {
                let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
                let mut cumulative = 0;
                let buckets = stats
                    .latency
                    .iter()
                    .map(|count| {
                        cumulative += load(count);
                        cumulative
                    })
                    .collect();
                PhaseSnapshot {
                    phase: *phase,
                    counters: vec![
                        ("events", load(&stats.events)),
                        ("pdk_calls", load(&stats.pdk_calls)),
                        ("exits", load(&stats.exits)),
                        ("errors", load(&stats.errors)),
                        ("panics", load(&stats.panics)),
                        ("abandoned", load(&stats.abandoned)),
                        ("refused", load(&stats.refused)),
                    ],
                    cumulative_buckets: buckets,
                    latency_sum_us: load(&stats.latency_sum_us),
                }
            })
            .collect()
    }
}

#[derive(Debug)]
pub struct PhaseSnapshot {
    pub phase: Phase,
    pub counters: Vec<(&'static str, u64)>,
    /// Events at or under each bound of [`BUCKETS_US`], then all events (+Inf).
    pub cumulative_buckets: Vec<u64>,
    pub latency_sum_us: u64,
}

/// Counters of every plugin and phase, as (name, help), the names of [`PhaseSnapshot::counters`].
const COUNTERS: [(&str, &str); 7] = [
    ("events", "Events (phase handler runs) that ended, however they ended"),
    ("pdk_calls", "PDK calls handlers made"),
    ("exits", "Events a handler ended with kong.response.exit or kong.response.error"),
    ("errors", "Events whose handler returned an error (the request got a 500 unless the plugin fails open)"),
    ("panics", "Events whose handler panicked (the request got a 500 unless the plugin fails open)"),
    ("abandoned", "Events given up: Kong stopped answering, or the handler overran --event-timeout"),
    ("refused", "Events refused at --max-events-per-plugin"),
];

/// The Prometheus text exposition (format 0.0.4) of every plugin's statistics.
pub fn prometheus<'a>(
    plugins: impl IntoIterator<Item = (&'a str, &'a PluginStats)>,
    events_in_flight: usize,
) -> String {
    let exposition = Exposition {
        plugins: plugins
            .into_iter()
            .map(|(name, stats)| PluginExposition {
                name: name.to_string(),
                phases: stats.snapshot(),
                reclaimed: stats.reclaimed_snapshot(),
            })
            .collect(),
        events_in_flight: events_in_flight as u64,
    };
    let mut registry = Registry::with_prefix("kong_rust_host");
    registry.register_collector(Box::new(exposition));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String");
    text
}

/// One scrape's figures, written out by prometheus-client.
#[derive(Debug)]
struct Exposition {
    plugins: Vec<PluginExposition>,
    events_in_flight: u64,
}

#[derive(Debug)]
struct PluginExposition {
    name: String,
    phases: Vec<PhaseSnapshot>,
    reclaimed: Vec<(Phase, String, u64)>,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for (counter, help) in COUNTERS {
            let mut metric = encoder.encode_descriptor(counter, help, None, MetricType::Counter)?;
            for plugin in &self.plugins {
                for phase in &plugin.phases {
                    let value = phase
                        .counters
                        .iter()
                        .find(|(name, _)| *name == counter)
                        .map_or(0, |(_, value)| *value);
                    let labels = [
                        ("plugin", plugin.name.as_str()),
                        ("phase", phase.phase.as_str()),
                    ];
                    ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "reclaimed_events",
            "Events reclaimed because Kong never answered a PDK call, by the call",
            None,
            MetricType::Counter,
        )?;
        for plugin in &self.plugins {
            for (phase, method, count) in &plugin.reclaimed {
                let labels = [
                    ("plugin", plugin.name.as_str()),
                    ("phase", phase.as_str()),
                    ("method", method.as_str()),
                ];
                ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "event_duration_seconds",
            "Event durations, from HandleEvent to the final answer",
            None,
            MetricType::Histogram,
        )?;
        for plugin in &self.plugins {
            for phase in &plugin.phases {
                let labels = [
                    ("plugin", plugin.name.as_str()),
                    ("phase", phase.phase.as_str()),
                ];
                let bounds = BUCKETS_US
                    .iter()
                    .map(|bound| *bound as f64 / 1e6)
                    .chain([f64::INFINITY]);
                let mut below = 0;
                let buckets: Vec<(f64, u64)> = bounds
                    .zip(&phase.cumulative_buckets)
                    .map(|(bound, cumulative)| {
                        let in_bucket = cumulative - below;
                        below = *cumulative;
                        (bound, in_bucket)
                    })
                    .collect();
                let count = phase.cumulative_buckets.last().copied().unwrap_or(0);
                let sum = phase.latency_sum_us as f64 / 1e6;
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let metric = encoder.encode_descriptor(
            "events_in_flight",
            "Events running or waiting for Kong now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.events_in_flight as i64).encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_the_exposition_is_prometheus_text() {
        let stats = PluginStats::default();
        stats.event(Phase::Access, Ending::Returned, Duration::from_micros(80));
        stats.event(Phase::Access, Ending::Panicked, Duration::from_millis(3));
        stats.pdk_call(Phase::Access);
        let snapshot = &stats.snapshot()[0];
        assert_eq!(snapshot.cumulative_buckets[0], 0); // <= 50 µs
        assert_eq!(snapshot.cumulative_buckets[1], 1); // <= 100 µs
        assert_eq!(snapshot.cumulative_buckets[6], 2); // <= 5 ms
        assert_eq!(*snapshot.cumulative_buckets.last().unwrap(), 2);
        let text = prometheus([("rust-x", &stats)], 3);
        assert!(text.contains("# TYPE kong_rust_host_panics_total counter\nkong_rust_host_panics_total{plugin=\"rust-x\",phase=\"access\"} 1\n"));
        assert!(text.contains("kong_rust_host_event_duration_seconds_bucket{plugin=\"rust-x\",phase=\"access\",le=\"0.0001\"} 1\n"));
        assert!(text.contains(
            "kong_rust_host_event_duration_seconds_count{plugin=\"rust-x\",phase=\"access\"} 2\n"
        ));
        assert!(text.ends_with("kong_rust_host_events_in_flight 3\n"));
        assert!(text.contains("# HELP kong_rust_host_panics_total Events whose handler panicked"));
        // Label values are escaped: a PDK method name is whatever the plugin sent.
        stats.reclaimed(Phase::Access, "kong.odd\"name\\x\n");
        let text = prometheus([("rust-x", &stats)], 0);
        assert!(
            text.contains(
                "kong_rust_host_reclaimed_events_total{plugin=\"rust-x\",phase=\"access\",method=\"kong.odd\\\"name\\\\x\\n\"} 1\n"
            ),
            "{text}"
        );
    }
}
