//! `kong-rust-bench`: measures `kong-rust-host` the way Kong loads it, beside the protocol floor
//! (`kong-rust-floor`) and Kong's own Python and JS plugin servers running the same plugin
//! logic. W emulated nginx workers per server (each a `KongClient` with its own connection pool
//! and its own `rust-bench` instance of the same config) carry C concurrent access events of K
//! PDK calls each, byte for byte as Kong sends them. Every server runs in the same process tree
//! and the servers take turns within each (K, C) pair, so machine noise hits them alike; medians
//! of the repeats are reported, with ratios and the targets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kong_driver::KongClient;
use serde_json::json;

use kong_rust_bench::{
    chart, checks,
    load::{self, Budget, Sample},
    median,
    server::{pin_to_cpu, Server},
    workspace_path,
};

/// The plugin every server serves under this name.
const PLUGIN: &str = "rust-bench";

/// Shorter than Kong's 60 s so a stuck server shows up as errors instead of a hung bench.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    version,
    args_override_self = true,
    about = "Benchmark kong-rust-host against the protocol floor and Kong's servers"
)]
struct Cli {
    /// Servers to measure, in turn (comma-separated): host, floor, python, js.
    #[arg(short = 's', long, value_delimiter = ',', default_values_t = Kind::ALL.map(|k| k.name().to_owned()),
          value_parser = clap::builder::PossibleValuesParser::new(Kind::ALL.map(Kind::name)))]
    servers: Vec<String>,
    /// kong-rust-host binary.
    #[arg(long, default_value_os_t = sibling("kong-rust-host"))]
    host_bin: PathBuf,
    /// The rust-bench plugin the host serves.
    #[arg(long, default_value_os_t = sibling("librust_bench.so"))]
    plugin: PathBuf,
    /// kong-rust-floor binary.
    #[arg(long, default_value_os_t = sibling("kong-rust-floor"))]
    floor_bin: PathBuf,
    /// Kong's Python plugin server (`kong-python-pluginserver` from `pip install kong-pdk`).
    #[arg(long)]
    python_bin: Option<PathBuf>,
    /// Kong's JS plugin server (`kong-js-pluginserver` from `npm install kong-pdk`).
    #[arg(long)]
    js_bin: Option<PathBuf>,
    /// Where the Python and JS versions of rust-bench are (`python/`, `js/`).
    #[arg(long, default_value_os_t = workspace_path("bench/peers"))]
    peers_dir: PathBuf,
    /// Concurrent in-flight events (comma-separated list: one measurement each).
    #[arg(short = 'c', long, value_delimiter = ',', default_values_t = [1, 16, 64],
          value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Vec<u32>,
    /// PDK calls per event, the plugin's `calls` config (comma-separated list).
    #[arg(short = 'k', long, value_delimiter = ',', default_values_t = [1, 10])]
    calls: Vec<u32>,
    /// Emulated nginx workers per server: clients with their own pool and instance.
    #[arg(short = 'w', long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Seconds per measurement.
    #[arg(short = 'd', long, default_value = "3", value_parser = positive_secs)]
    duration: Duration,
    /// Events per measurement instead of a duration.
    #[arg(short = 'n', long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Seconds of unmeasured load per server before each (K, C) pair.
    #[arg(long, default_value = "0.5", value_parser = secs)]
    warmup: Duration,
    /// Measurements per (K, C) and server; the median of each metric is reported.
    #[arg(short = 'r', long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Do not pin the load generator to CPU 0 and the servers to CPU 1.
    #[arg(long)]
    no_pin: bool,
    /// Skip the host checks (instance memory, dump time, start-up time).
    #[arg(long)]
    no_checks: bool,
    /// Write the chart (events/s and p99 against concurrency) to this SVG file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Cli {
    fn budget(&self) -> Budget {
        match self.events {
            Some(n) => Budget::events(n),
            None => Budget::duration(self.duration),
        }
    }
}

/// A binary built next to this one (same cargo target dir and profile).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Host,
    Floor,
    Python,
    Js,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Host, Kind::Floor, Kind::Python, Kind::Js];

    fn name(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Floor => "floor",
            Kind::Python => "python",
            Kind::Js => "js",
        }
    }

    fn parse(name: &str) -> Kind {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .expect("clap checked the name")
    }

    /// Starts this server on `cpu`, serving rust-bench.
    fn start(self, cli: &Cli, cpu: Option<usize>) -> Result<Server, String> {
        let peers = |lang: &str| cli.peers_dir.join(lang).to_string_lossy().into_owned();
        match self {
            Kind::Host => Server::host(&cli.host_bin, &[&cli.plugin], &[], PLUGIN, cpu),
            Kind::Floor => Server::command(
                &cli.floor_bin,
                &["--socket", "{dir}/floor.sock"],
                "floor.sock",
                cpu,
            ),
            // Default mode (a thread per connection and per event), as Kong starts it.
            Kind::Python => Server::command(
                cli.python_bin
                    .as_deref()
                    .ok_or("python needs --python-bin")?,
                &["-d", &peers("python"), "-p", "{dir}"],
                "python_pluginserver.sock",
                cpu,
            ),
            Kind::Js => Server::command(
                cli.js_bin.as_deref().ok_or("js needs --js-bin")?,
                &["-d", &peers("js"), "-p", "{dir}"],
                "js_pluginserver.sock",
                cpu,
            ),
        }
    }
}

/// A server under test and Kong's workers talking to it.
struct Target {
    kind: Kind,
    server: Server,
    clients: Vec<KongClient>,
    /// (client, instance id) of the current K, one per worker.
    workers: Vec<(KongClient, i64)>,
}

/// The reported figures of one (server, K, C): medians over the repeats, except `errors`,
/// which counts every failed event including the warmup's, so no failure can hide.
struct Row {
    kind: Kind,
    calls: u32,
    concurrency: u32,
    events_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    cpu_ms_per_1k_events: Option<f64>,
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
    let kinds: Vec<Kind> = cli.servers.iter().map(|s| Kind::parse(s)).collect();
    // Kong's side on CPU 0, the server under test on CPU 1: neither steals the other's core.
    let pinned = !cli.no_pin && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let server_cpu = pinned.then_some(1);
    if pinned {
        pin_to_cpu(0).map_err(|e| format!("pinning the load generator to CPU 0: {e}"))?;
    }
    let mut targets = Vec::new();
    for kind in kinds {
        let server = kind.start(cli, server_cpu)?;
        let clients = (0..cli.workers)
            .map(|_| {
                let client = KongClient::new(server.socket());
                client.set_read_timeout(READ_TIMEOUT);
                client
            })
            .collect();
        targets.push(Target {
            kind,
            server,
            clients,
            workers: Vec::new(),
        });
    }
    // One thread: the load generator is one "Kong" on its own core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let rows = runtime.block_on(measure(cli, &mut targets))?;
    let peak_rss: Vec<(Kind, Option<u64>)> = targets
        .iter()
        .map(|t| (t.kind, t.server.peak_rss_kib()))
        .collect();
    for target in targets {
        match target.server.stop() {
            Ok(status) if status.success() || status.code().is_none() => {}
            Ok(status) => eprintln!(
                "kong-rust-bench: {} exited with {status}",
                target.kind.name()
            ),
            Err(e) => eprintln!("kong-rust-bench: waiting for {}: {e}", target.kind.name()),
        }
    }
    let checks = match cli.no_checks || !cli.servers.iter().any(|s| s == "host") {
        true => None,
        false => Some(runtime.block_on(checks::run(&cli.host_bin, &cli.plugin, server_cpu))?),
    };

    println!(
        "{} workers per server, {} x {} repeats (median), {:.1} s warmup; {}",
        cli.workers,
        match cli.events {
            Some(n) => format!("{n} events"),
            None => format!("{:.1} s", cli.duration.as_secs_f64()),
        },
        cli.repeats,
        cli.warmup.as_secs_f64(),
        match pinned {
            true => "load generator on CPU 0, server on CPU 1",
            false => "not pinned",
        }
    );
    print_table(&rows, &peak_rss);
    let ratios = print_ratios(cli, &rows);
    if let Some(checks) = &checks {
        checks.print();
    }
    print_targets(&rows, checks.as_ref());
    if let Some(path) = &cli.chart {
        let series: Vec<chart::Series> = peak_rss
            .iter()
            .map(|(kind, _)| chart::Series {
                name: kind.name(),
                points: rows
                    .iter()
                    .filter(|r| r.kind == *kind)
                    .map(|r| chart::Point {
                        calls: r.calls,
                        concurrency: r.concurrency,
                        events_per_sec: r.events_per_sec,
                        p99_us: r.p99_us,
                    })
                    .collect(),
            })
            .collect();
        std::fs::write(path, chart::svg(&series, &cli.calls, &cli.concurrency))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        println!("chart: {}", path.display());
    }
    if let Some(path) = &cli.json {
        let report = json_report(cli, pinned, &rows, &peak_rss, &ratios, checks.as_ref());
        std::fs::write(path, format!("{report:#}\n"))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(rows.iter().all(|r| r.errors == 0))
}

/// For each K: every worker of every server starts its instance (Kong does so per worker), all
/// C values are measured against those instances, then the instances are closed as Kong does on
/// a config change. Only a failed StartInstance aborts: without instances nothing can be measured.
async fn measure(cli: &Cli, targets: &mut [Target]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &calls in &cli.calls {
        let config = json!({ "calls": calls }).to_string();
        for target in targets.iter_mut() {
            target.workers.clear();
            for client in &target.clients {
                let reply = client.start_instance(PLUGIN, &config).await.map_err(|e| {
                    format!(
                        "{}: StartInstance {PLUGIN} {config}: {e}",
                        target.kind.name()
                    )
                })?;
                target.workers.push((client.clone(), reply.id));
            }
        }
        for &concurrency in &cli.concurrency {
            rows.extend(measure_pair(cli, targets, calls, concurrency).await);
        }
        for target in targets.iter() {
            for (client, id) in &target.workers {
                // Kong ignores this reply too; a failure here must not discard the measurements.
                if let Err(e) = client.close_instance(*id).await {
                    eprintln!(
                        "kong-rust-bench: {}: CloseInstance {id}: {e}",
                        target.kind.name()
                    );
                }
            }
        }
    }
    Ok(rows)
}

/// What the repeats of one server at one (K, C) collected.
#[derive(Default)]
struct Repeats {
    eps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl Repeats {
    fn failures(&mut self, sample: &mut Sample) {
        self.errors += sample.errors;
        if self.first_error.is_none() {
            self.first_error = sample.first_error.take();
        }
    }
}

/// A warmup per server, then `repeats` rounds in which every server is measured once, the
/// order rotating each round, with each server's CPU time read around its window.
async fn measure_pair(cli: &Cli, targets: &[Target], calls: u32, concurrency: u32) -> Vec<Row> {
    let c = concurrency as usize;
    let mut collected: Vec<Repeats> = targets.iter().map(|_| Repeats::default()).collect();
    if !cli.warmup.is_zero() {
        for (target, repeats) in targets.iter().zip(&mut collected) {
            let mut warmup =
                load::run(&target.workers, c, calls, Budget::duration(cli.warmup)).await;
            repeats.failures(&mut warmup);
        }
    }
    for round in 0..cli.repeats as usize {
        for i in 0..targets.len() {
            let index = (i + round) % targets.len();
            let (target, repeats) = (&targets[index], &mut collected[index]);
            let cpu_before = target.server.cpu_time();
            let mut sample = load::run(&target.workers, c, calls, cli.budget()).await;
            let cpu_used = target
                .server
                .cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            let events = sample.latencies_ns.len();
            eprintln!(
                "{:>6} K={calls} C={concurrency} run {}/{}: {events} events in {:.2} s, {} errors",
                target.kind.name(),
                round + 1,
                cli.repeats,
                sample.elapsed.as_secs_f64(),
                sample.errors
            );
            repeats.eps.push(sample.events_per_sec());
            repeats.p50.push(sample.percentile_us(50.0));
            repeats.p99.push(sample.percentile_us(99.0));
            if let Some(used) = cpu_used.filter(|_| events > 0) {
                repeats.cpu.push(used.as_secs_f64() * 1e6 / events as f64);
            }
            repeats.failures(&mut sample);
        }
    }
    targets
        .iter()
        .zip(collected)
        .map(|(target, repeats)| {
            if let Some(error) = &repeats.first_error {
                eprintln!(
                    "{} K={calls} C={concurrency}: {} failed events; first: {error}",
                    target.kind.name(),
                    repeats.errors
                );
            }
            Row {
                kind: target.kind,
                calls,
                concurrency,
                events_per_sec: median(repeats.eps).unwrap_or(0.0),
                p50_us: median(repeats.p50).unwrap_or(0.0),
                p99_us: median(repeats.p99).unwrap_or(0.0),
                errors: repeats.errors,
                cpu_ms_per_1k_events: median(repeats.cpu),
            }
        })
        .collect()
}

fn print_table(rows: &[Row], peak_rss: &[(Kind, Option<u64>)]) {
    println!(
        "\n{:>7} {:>3} {:>3} {:>10} {:>9} {:>9} {:>7} {:>14}",
        "server", "K", "C", "events/s", "p50 µs", "p99 µs", "errors", "CPU ms/1k ev"
    );
    for row in rows {
        let cpu = row
            .cpu_ms_per_1k_events
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        println!(
            "{:>7} {:>3} {:>3} {:>10.0} {:>9.0} {:>9.0} {:>7} {:>14}",
            row.kind.name(),
            row.calls,
            row.concurrency,
            row.events_per_sec,
            row.p50_us,
            row.p99_us,
            row.errors,
            cpu
        );
    }
    let rss: Vec<String> = peak_rss
        .iter()
        .map(|(kind, kib)| match kib {
            Some(kib) => format!("{} {:.1} MiB", kind.name(), *kib as f64 / 1024.0),
            None => format!("{} -", kind.name()),
        })
        .collect();
    println!("peak RSS (VmHWM): {}", rss.join(", "));
}

fn find(rows: &[Row], kind: Kind, calls: u32, concurrency: u32) -> Option<&Row> {
    rows.iter()
        .find(|r| r.kind == kind && r.calls == calls && r.concurrency == concurrency)
}

/// The host's events/s over another server's at one (K, C).
fn ratio(rows: &[Row], other: Kind, calls: u32, concurrency: u32) -> Option<f64> {
    let host = find(rows, Kind::Host, calls, concurrency)?;
    let other = find(rows, other, calls, concurrency)?;
    (other.events_per_sec > 0.0).then(|| host.events_per_sec / other.events_per_sec)
}

/// Prints host/floor, host/python and host/js events/s at every (K, C); returns them for JSON.
fn print_ratios(cli: &Cli, rows: &[Row]) -> Vec<serde_json::Value> {
    let show = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    println!(
        "\nevents/s ratios\n{:>3} {:>3} {:>11} {:>12} {:>8}",
        "K", "C", "host/floor", "host/python", "host/js"
    );
    let mut out = Vec::new();
    for &calls in &cli.calls {
        for &concurrency in &cli.concurrency {
            let [floor, python, js] =
                [Kind::Floor, Kind::Python, Kind::Js].map(|k| ratio(rows, k, calls, concurrency));
            println!(
                "{calls:>3} {concurrency:>3} {:>11} {:>12} {:>8}",
                show(floor),
                show(python),
                show(js)
            );
            out.push(json!({
                "calls": calls, "concurrency": concurrency,
                "host_over_floor": floor, "host_over_python": python, "host_over_js": js,
            }));
        }
    }
    out
}

/// One line per target of the issue: the measured median and whether it is met.
fn print_targets(rows: &[Row], checks: Option<&checks::Checks>) {
    println!("\ntargets");
    let line = |target: &str, measured: Option<String>, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!(
            "  {target:<40} {:>22}  {verdict}",
            measured.unwrap_or_default()
        );
    };
    let at_least = |other: Kind, calls, concurrency, min: f64| {
        let r = ratio(rows, other, calls, concurrency);
        (r.map(|r| format!("{r:.2}x")), r.map(|r| r >= min))
    };
    let (m, ok) = at_least(Kind::Floor, 10, 16, 0.7);
    line("host >= 0.7 x floor, K=10 C=16", m, ok);
    for (other, min) in [(Kind::Python, 5.0), (Kind::Js, 1.5)] {
        for calls in [1, 10] {
            for concurrency in [16, 64] {
                let (m, ok) = at_least(other, calls, concurrency, min);
                let target = format!(
                    "host >= {min} x {}, K={calls} C={concurrency}",
                    other.name()
                );
                line(&target, m, ok);
            }
        }
    }
    for calls in [1, 10] {
        let host = find(rows, Kind::Host, calls, 64);
        let others = [Kind::Python, Kind::Js].map(|k| find(rows, k, calls, 64));
        let measured = host
            .zip(others[0])
            .zip(others[1])
            .map(|((h, p), j)| format!("{:.0}/{:.0}/{:.0} µs", h.p99_us, p.p99_us, j.p99_us));
        let met = host
            .zip(others[0])
            .zip(others[1])
            .map(|((h, p), j)| h.p99_us < p.p99_us && h.p99_us < j.p99_us);
        line(
            &format!("host p99 < python, js, K={calls} C=64"),
            measured,
            met,
        );
    }
    let checked = |f: &dyn Fn(&checks::Checks) -> (String, bool)| match checks {
        Some(c) => {
            let (m, ok) = f(c);
            (Some(m), Some(ok))
        }
        None => (None, None),
    };
    let (m, ok) = checked(&|c| {
        let mib = c.instances_rss_kib as f64 / 1024.0;
        (format!("{mib:.1} MiB"), mib <= 64.0)
    });
    line("8,000 StartInstance -> RSS <= 64 MB", m, ok);
    let (m, ok) = checked(&|c| (format!("{:.1} ms", c.dump_ms), c.dump_ms <= 10.0));
    line("dump <= 10 ms", m, ok);
    let (m, ok) = checked(&|c| (format!("{:.1} ms", c.startup_ms), c.startup_ms <= 100.0));
    line("20 plugins, all sockets bound <= 100 ms", m, ok);
}

fn json_report(
    cli: &Cli,
    pinned: bool,
    rows: &[Row],
    peak_rss: &[(Kind, Option<u64>)],
    ratios: &[serde_json::Value],
    checks: Option<&checks::Checks>,
) -> serde_json::Value {
    let results: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "server": row.kind.name(),
                "calls": row.calls,
                "concurrency": row.concurrency,
                "events_per_sec": row.events_per_sec,
                "p50_us": row.p50_us,
                "p99_us": row.p99_us,
                "errors": row.errors,
                "cpu_ms_per_1k_events": row.cpu_ms_per_1k_events,
            })
        })
        .collect();
    let rss: serde_json::Map<_, _> = peak_rss
        .iter()
        .map(|(kind, kib)| (kind.name().to_owned(), json!(kib)))
        .collect();
    json!({
        "workers": cli.workers,
        "duration_s": cli.events.is_none().then_some(cli.duration.as_secs_f64()),
        "events": cli.events,
        "warmup_s": cli.warmup.as_secs_f64(),
        "repeats": cli.repeats,
        "pinned": pinned,
        "results": results,
        "peak_rss_kib": rss,
        "ratios": ratios,
        "checks": checks.map(checks::Checks::to_json),
    })
}
