//! `kong-rust-bench`: measures `kong-rust-host` the way Kong loads it. W emulated nginx workers
//! (each a `KongClient` with its own connection pool and its own `rust-bench` instance of the
//! same config) carry C concurrent access events of K PDK calls each, byte for byte as Kong
//! sends them. It reports throughput, latency, PDK round trips and, when it started the host
//! itself, the host's CPU time per event and peak RSS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kong_driver::KongClient;
use serde_json::json;

use kong_rust_bench::{
    host::Host,
    load::{self, Budget, Sample},
    workspace_path,
};

/// The plugin the bench drives.
const PLUGIN: &str = "rust-bench";

/// Shorter than Kong's 60 s so a stuck host shows up as errors instead of a hung bench.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(version, about = "Benchmark kong-rust-host as Kong drives it")]
struct Cli {
    /// Host binary to start (not with --socket).
    #[arg(long, default_value_os_t = workspace_path("target/release/kong-rust-host"))]
    host_bin: PathBuf,
    /// The rust-bench plugin to serve (not with --socket).
    #[arg(long, default_value_os_t = workspace_path("target/release/librust_bench.so"))]
    plugin: PathBuf,
    /// Attach to a running host's rust-bench socket instead of starting one.
    #[arg(long, conflicts_with_all = ["host_bin", "plugin"])]
    socket: Option<PathBuf>,
    /// Concurrent in-flight events (comma-separated list: one measurement each).
    #[arg(short = 'c', long, value_delimiter = ',', default_values_t = [1, 16, 64],
          value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Vec<u32>,
    /// PDK calls per event, the plugin's `calls` config (comma-separated list).
    #[arg(short = 'k', long, value_delimiter = ',', default_values_t = [1, 10])]
    calls: Vec<u32>,
    /// Emulated nginx workers: clients with their own pool and instance.
    #[arg(short = 'w', long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Seconds per measurement.
    #[arg(short = 'd', long, default_value = "5", value_parser = positive_secs)]
    duration: Duration,
    /// Events per measurement instead of a duration.
    #[arg(short = 'n', long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Seconds of unmeasured load before each (K, C) measurement.
    #[arg(long, default_value = "1", value_parser = secs)]
    warmup: Duration,
    /// Measurements per (K, C); the median of each metric is reported.
    #[arg(short = 'r', long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Cli {
    fn budget(&self) -> Budget {
        match self.events {
            Some(n) => Budget::events(n),
            None => Budget::duration(self.duration),
        }
    }
}

fn secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn positive_secs(s: &str) -> Result<Duration, String> {
    secs(s).and_then(|d| match d.is_zero() {
        true => Err("must be greater than 0".into()),
        false => Ok(d),
    })
}

/// The reported figures of one (K, C) pair: medians over the repeats, except `errors`, which
/// counts every failed event including the warmup's, so no failure can hide.
struct Row {
    calls: u32,
    concurrency: u32,
    events_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    cpu_ms_per_1k_events: Option<f64>,
}

impl Row {
    /// Each event is HandleEvent plus one step per PDK call.
    fn pdk_round_trips_per_sec(&self) -> f64 {
        self.events_per_sec * f64::from(self.calls + 1)
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("kong-rust-bench: some events failed (see the errors column)");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("kong-rust-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every measurement and prints the report; `Ok(false)` when any event failed.
fn run(cli: &Cli) -> Result<bool, String> {
    let (host, socket) = match &cli.socket {
        Some(socket) => (None, socket.clone()),
        None => {
            let host = Host::start(&cli.host_bin, &[&cli.plugin], &[], PLUGIN)?;
            let socket = host.socket().to_path_buf();
            (Some(host), socket)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let rows = runtime.block_on(measure(cli, &socket, host.as_ref()))?;
    let peak_rss_kib = host.as_ref().and_then(Host::peak_rss_kib);
    if let Some(host) = host {
        match host.stop() {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("kong-rust-bench: the host exited with {status}"),
            Err(e) => eprintln!("kong-rust-bench: waiting for the host: {e}"),
        }
    }
    if cli.json {
        print_json(cli, &rows, peak_rss_kib);
    } else {
        print_table(cli, &rows, peak_rss_kib);
    }
    Ok(rows.iter().all(|r| r.errors == 0))
}

/// For each K: every worker starts its instance (Kong does so per worker), all C values are
/// measured against those instances, then the instances are closed as Kong does on a
/// config change. Only a failed StartInstance aborts: without instances nothing can be measured.
async fn measure(cli: &Cli, socket: &Path, host: Option<&Host>) -> Result<Vec<Row>, String> {
    let clients: Vec<KongClient> = (0..cli.workers)
        .map(|_| {
            let client = KongClient::new(socket);
            client.set_read_timeout(READ_TIMEOUT);
            client
        })
        .collect();
    let mut rows = Vec::new();
    for &calls in &cli.calls {
        let config = json!({ "calls": calls }).to_string();
        let mut workers = Vec::new();
        for client in &clients {
            let reply = client
                .start_instance(PLUGIN, &config)
                .await
                .map_err(|e| format!("StartInstance {PLUGIN} {config}: {e}"))?;
            workers.push((client.clone(), reply.id));
        }
        for &concurrency in &cli.concurrency {
            rows.push(measure_pair(cli, &workers, calls, concurrency, host).await);
        }
        for (client, id) in &workers {
            // Kong ignores this reply too; a failure here must not discard the measurements.
            if let Err(e) = client.close_instance(*id).await {
                eprintln!("kong-rust-bench: CloseInstance {id}: {e}");
            }
        }
    }
    Ok(rows)
}

/// Warmup, then `repeats` measurements of one (K, C) pair, with the host's CPU time read
/// around each measurement window.
async fn measure_pair(
    cli: &Cli,
    workers: &[(KongClient, i64)],
    calls: u32,
    concurrency: u32,
    host: Option<&Host>,
) -> Row {
    let c = concurrency as usize;
    let mut failures = Sample::default();
    if !cli.warmup.is_zero() {
        failures = load::run(workers, c, calls, Budget::duration(cli.warmup)).await;
    }
    let (mut eps, mut p50, mut p99, mut cpu) = (vec![], vec![], vec![], vec![]);
    let mut errors = failures.errors;
    let mut first_error = failures.first_error;
    for repeat in 1..=cli.repeats {
        let cpu_before = host.and_then(Host::cpu_time);
        let sample = load::run(workers, c, calls, cli.budget()).await;
        let cpu_used = host
            .and_then(Host::cpu_time)
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let events = sample.latencies_ns.len();
        eprintln!(
            "calls={calls} concurrency={concurrency} run {repeat}/{}: {events} events in {:.2} s, {} errors",
            cli.repeats,
            sample.elapsed.as_secs_f64(),
            sample.errors
        );
        eps.push(sample.events_per_sec());
        p50.push(sample.percentile_us(50.0));
        p99.push(sample.percentile_us(99.0));
        if let Some(used) = cpu_used.filter(|_| events > 0) {
            cpu.push(used.as_secs_f64() * 1e3 / events as f64 * 1e3);
        }
        errors += sample.errors;
        first_error = first_error.or(sample.first_error);
    }
    if let Some(error) = first_error {
        eprintln!(
            "calls={calls} concurrency={concurrency}: {errors} failed events; first: {error}"
        );
    }
    Row {
        calls,
        concurrency,
        events_per_sec: median(eps).unwrap_or(0.0),
        p50_us: median(p50).unwrap_or(0.0),
        p99_us: median(p99).unwrap_or(0.0),
        errors,
        cpu_ms_per_1k_events: median(cpu),
    }
}

fn describe_run(cli: &Cli) -> String {
    let window = match cli.events {
        Some(n) => format!("{n} events"),
        None => format!("{:.1} s", cli.duration.as_secs_f64()),
    };
    format!(
        "{} workers, {window} x {} repeats (median) after {:.1} s warmup",
        cli.workers,
        cli.repeats,
        cli.warmup.as_secs_f64()
    )
}

fn print_table(cli: &Cli, rows: &[Row], peak_rss_kib: Option<u64>) {
    match &cli.socket {
        Some(socket) => println!("host: attached to {}", socket.display()),
        None => println!(
            "host: {} serving {}",
            cli.host_bin.display(),
            cli.plugin.display()
        ),
    }
    println!("{}", describe_run(cli));
    println!(
        "{:>5} {:>5} {:>11} {:>13} {:>9} {:>9} {:>7} {:>17}",
        "K", "C", "events/s", "PDK RTs/s", "p50 µs", "p99 µs", "errors", "host CPU ms/1k ev"
    );
    for row in rows {
        let cpu = row
            .cpu_ms_per_1k_events
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        println!(
            "{:>5} {:>5} {:>11.0} {:>13.0} {:>9.1} {:>9.1} {:>7} {:>17}",
            row.calls,
            row.concurrency,
            row.events_per_sec,
            row.pdk_round_trips_per_sec(),
            row.p50_us,
            row.p99_us,
            row.errors,
            cpu
        );
    }
    if let Some(kib) = peak_rss_kib {
        println!("host peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
}

fn print_json(cli: &Cli, rows: &[Row], peak_rss_kib: Option<u64>) {
    let results: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "calls": row.calls,
                "concurrency": row.concurrency,
                "events_per_sec": row.events_per_sec,
                "pdk_round_trips_per_sec": row.pdk_round_trips_per_sec(),
                "p50_us": row.p50_us,
                "p99_us": row.p99_us,
                "errors": row.errors,
                "host_cpu_ms_per_1k_events": row.cpu_ms_per_1k_events,
            })
        })
        .collect();
    let report = json!({
        "socket": cli.socket,
        "host_bin": cli.socket.is_none().then_some(&cli.host_bin),
        "plugin": cli.socket.is_none().then_some(&cli.plugin),
        "workers": cli.workers,
        "duration_s": cli.events.is_none().then_some(cli.duration.as_secs_f64()),
        "events": cli.events,
        "warmup_s": cli.warmup.as_secs_f64(),
        "repeats": cli.repeats,
        "results": results,
        "host_peak_rss_kib": peak_rss_kib,
    });
    println!("{report:#}");
}
