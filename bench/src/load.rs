//! The load itself: C tokio tasks, each one a Kong request loop running the `access` event of
//! one worker's `rust-bench` instance, as nginx workers do under concurrent traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kong_driver::{run_event, EventEnd, EventOutcome, KongClient, LuaValue, PdkResponder};

/// The only PDK call `rust-bench` makes.
const GET_HEADER: &str = "kong.request.get_header";

/// Answers `get_header` with a constant and nothing else, so the load generator spends as
/// little as possible per call and the numbers are dominated by the host.
struct HostHeader;

impl PdkResponder for HostHeader {
    fn respond(&mut self, method: &str, _args: &[rmpv::Value]) -> Option<LuaValue> {
        (method == GET_HEADER).then(|| LuaValue::str("example.com"))
    }
}

/// When a load run ends: at a deadline, or once a number of events has been started.
pub enum Budget {
    /// Start no event after this instant (in-flight ones finish).
    Until(Instant),
    /// Start exactly this many events in total across all tasks.
    Events { total: u64, started: AtomicU64 },
}

impl Budget {
    /// Events may start for `d` from now.
    pub fn duration(d: Duration) -> Self {
        Budget::Until(Instant::now() + d)
    }

    /// `total` events, shared by all tasks through one counter.
    pub fn events(total: u64) -> Self {
        Budget::Events {
            total,
            started: AtomicU64::new(0),
        }
    }

    /// Whether a task may start one more event.
    fn take(&self) -> bool {
        match self {
            Budget::Until(deadline) => Instant::now() < *deadline,
            Budget::Events { total, started } => started.fetch_add(1, Ordering::Relaxed) < *total,
        }
    }
}

/// What one load run observed.
#[derive(Default)]
pub struct Sample {
    /// Latency of every successful event in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
    /// Events that failed (RPC error, no "ret", or not exactly K get_header calls).
    pub errors: u64,
    /// The first failure, to show the user why.
    pub first_error: Option<String>,
    /// Wall time from starting the tasks to the last one finishing.
    pub elapsed: Duration,
}

impl Sample {
    /// Successful events per second of wall time.
    pub fn events_per_sec(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile in microseconds (0 when nothing succeeded).
    pub fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies_ns.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies_ns[rank - 1] as f64 / 1_000.0
    }

    fn absorb(&mut self, other: Sample) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `concurrency` tasks until `budget` is spent; task i drives worker i % W. Each event is
/// timed from just before HandleEvent to the final "ret".
pub async fn run(
    workers: &[(KongClient, i64)],
    concurrency: usize,
    calls: u32,
    budget: Budget,
) -> Sample {
    let budget = Arc::new(budget);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let (client, instance) = workers[i % workers.len()].clone();
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while budget.take() {
                    let t = Instant::now();
                    let result = run_event(&client, instance, "access", &mut HostHeader).await;
                    let elapsed = t.elapsed();
                    match result
                        .map_err(|e| e.to_string())
                        .and_then(|o| check(&o, calls))
                    {
                        Ok(()) => sample.latencies_ns.push(elapsed.as_nanos() as u64),
                        Err(error) => {
                            sample.errors += 1;
                            sample.first_error.get_or_insert(error);
                        }
                    }
                }
                sample
            })
        })
        .collect();
    let mut total = Sample::default();
    for task in tasks {
        match task.await {
            Ok(sample) => total.absorb(sample),
            Err(panic) => total.absorb(Sample {
                errors: 1,
                first_error: Some(format!("load task failed: {panic}")),
                ..Sample::default()
            }),
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_ns.sort_unstable();
    total
}

/// An event counts only if it ended with "ret" after exactly `calls` get_header calls.
fn check(outcome: &EventOutcome, calls: u32) -> Result<(), String> {
    if outcome.end != EventEnd::Ret {
        return Err(format!("event did not end with \"ret\": {:?}", outcome.end));
    }
    let got = outcome
        .calls
        .iter()
        .filter(|c| c.method == GET_HEADER)
        .count();
    if got != calls as usize || got != outcome.calls.len() {
        let methods: Vec<_> = outcome.calls.iter().map(|c| c.method.as_str()).collect();
        return Err(format!(
            "expected {calls} get_header calls, got {methods:?}"
        ));
    }
    Ok(())
}
