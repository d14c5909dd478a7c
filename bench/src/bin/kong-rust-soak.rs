//! `kong-rust-soak`: a long run of events that end every way Kong ends them (normal returns,
//! `kong.response.exit`, events Kong abandons, handler errors, panics), checking afterwards that
//! the host's event table is empty again and that its memory stayed flat.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use kong_driver::{run_event, EventEnd, KongClient, LuaValue, SimRequest, StepData};
use kong_rust_bench::{server::Server, workspace_path};

#[derive(Parser)]
#[command(about = "Soak kong-rust-host with events that end every way Kong ends them")]
struct Cli {
    /// Events in total.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events in flight at once.
    #[arg(short, long, default_value_t = 32)]
    concurrency: u64,
    /// Emulated nginx workers per plugin, each its own client and instance.
    #[arg(short, long, default_value_t = 8)]
    workers: usize,
    #[arg(long, default_value_os_t = workspace_path("target/release/kong-rust-host"))]
    host_bin: PathBuf,
    #[arg(long, default_value_os_t = workspace_path("target/release/librust_hello.so"))]
    hello: PathBuf,
    #[arg(long, default_value_os_t = workspace_path("target/release/libfixture_faulty.so"))]
    faulty: PathBuf,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
}

/// How an event ends; `i % 100` picks it, so every run has the same mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ending {
    Normal,
    Exit,
    Abandoned,
    Error,
    Panic,
}

const ENDINGS: [Ending; 5] = [
    Ending::Normal,
    Ending::Exit,
    Ending::Abandoned,
    Ending::Error,
    Ending::Panic,
];

fn ending(i: u64) -> Ending {
    match i % 100 {
        0 => Ending::Abandoned,
        1..=5 => Ending::Exit,
        6..=8 => Ending::Error,
        9 | 10 => Ending::Panic,
        _ => Ending::Normal,
    }
}

/// Seconds the host waits before reclaiming an abandoned event.
const EVENT_TIMEOUT: u64 = 1;

struct Clients {
    hello: Vec<(KongClient, i64)>,
    faulty: Vec<(KongClient, i64)>,
}

async fn start_clients(
    host: &Server,
    plugin: &str,
    workers: usize,
) -> Result<Vec<(KongClient, i64)>, String> {
    let mut clients = Vec::new();
    for _ in 0..workers {
        let client = KongClient::new(host.socket_of(plugin));
        let id = client
            .start_instance(plugin, "{}")
            .await
            .map_err(|e| format!("{plugin}: {e}"))?
            .id;
        clients.push((client, id));
    }
    Ok(clients)
}

/// Runs event `i` and checks it ended as intended.
async fn run_one(clients: &Clients, i: u64) -> Result<(), String> {
    let worker = i as usize;
    let (client, id) = match ending(i) {
        Ending::Error | Ending::Panic => &clients.faulty[worker % clients.faulty.len()],
        _ => &clients.hello[worker % clients.hello.len()],
    };
    let mut request = SimRequest::new().header("host", "soak");
    request = match ending(i) {
        Ending::Exit => request.header("x-deny", ""),
        Ending::Error => request.header("x-fault", "error"),
        Ending::Panic => request.header("x-fault", "panic"),
        Ending::Normal | Ending::Abandoned => request,
    };
    if ending(i) == Ending::Abandoned {
        // Kong hit a Lua error inside the PDK call: it never sends the Step.
        let reply = client
            .handle_event(*id, "access")
            .await
            .map_err(|e| e.to_string())?;
        return match reply.data {
            StepData::Call { .. } => Ok(()),
            StepData::Ret => Err("abandoned event returned at once".into()),
        };
    }
    let outcome = run_event(client, *id, "access", &mut request)
        .await
        .map_err(|e| e.to_string())?;
    let status = outcome.exit().and_then(|exit| exit.status());
    let as_intended = match ending(i) {
        Ending::Normal => matches!(outcome.end, EventEnd::Ret),
        Ending::Exit => status == Some(403),
        Ending::Error | Ending::Panic => status == Some(500),
        Ending::Abandoned => unreachable!("handled above"),
    };
    if as_intended {
        Ok(())
    } else {
        Err(format!("{:?} event ended as {:?}", ending(i), outcome.end))
    }
}

async fn events_in_flight(client: &KongClient) -> Result<u64, String> {
    let status = client
        .call("plugin.GetStatus", LuaValue::Nil)
        .await
        .map_err(|e| e.to_string())?;
    status["EventsInFlight"]
        .as_u64()
        .ok_or_else(|| format!("no EventsInFlight in {status}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A million events include tens of thousands of deliberate panics and errors, each of which
    // the host logs; the soak checks outcomes itself.
    std::env::set_var("RUST_LOG", "off");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(soak(&cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("kong-rust-soak: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn soak(cli: &Cli) -> Result<bool, String> {
    let timeout = EVENT_TIMEOUT.to_string();
    let args = [
        "--event-timeout",
        &timeout,
        // Abandoned events are Kong's silence: reclaimed on this clock, not the handler's.
        "--kong-step-timeout",
        &timeout,
        "--max-events-per-plugin",
        "4096",
    ];
    let host = Server::host(
        &cli.host_bin,
        &[&cli.hello, &cli.faulty],
        &args,
        "rust-hello",
        None,
    )?;
    let clients = Arc::new(Clients {
        hello: start_clients(&host, "rust-hello", cli.workers).await?,
        faulty: start_clients(&host, "rust-faulty", cli.workers).await?,
    });
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..cli.concurrency)
        .map(|_| {
            let (clients, next, failures, total) = (
                Arc::clone(&clients),
                Arc::clone(&next),
                Arc::clone(&failures),
                cli.events,
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    if let Err(error) = run_one(&clients, i).await {
                        if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first failure (event {i}): {error}");
                        }
                    }
                }
            })
        })
        .collect();

    println!(
        "{:>8} {:>10} {:>10} {:>10}",
        "seconds", "events", "RSS KiB", "in flight"
    );
    let probe = &clients.hello[0].0;
    let mut samples = Vec::new();
    while tasks.iter().any(|task| !task.is_finished()) {
        tokio::time::sleep(Duration::from_secs(cli.sample_every)).await;
        let done = next.load(Ordering::Relaxed).min(cli.events);
        let rss = host.rss_kib().unwrap_or(0);
        let in_flight = events_in_flight(probe).await?;
        println!(
            "{:>8.0} {:>10} {:>10} {:>10}",
            started.elapsed().as_secs_f64(),
            done,
            rss,
            in_flight
        );
        samples.push(rss);
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    // Abandoned events are reclaimed one event timeout after Kong went quiet.
    tokio::time::sleep(Duration::from_secs(EVENT_TIMEOUT) + Duration::from_millis(1500)).await;
    let left = events_in_flight(probe).await?;
    let final_rss = host.rss_kib().unwrap_or(0);
    let failed = failures.load(Ordering::Relaxed);

    let mix: Vec<String> = ENDINGS
        .iter()
        .map(|e| format!("{e:?} {}", (0..100).filter(|i| ending(*i) == *e).count()))
        .collect();
    println!("mix per 100 events: {}", mix.join(", "));
    println!(
        "{} events in {:.1} s ({:.0} events/s), {} not ending as intended",
        cli.events,
        elapsed.as_secs_f64(),
        cli.events as f64 / elapsed.as_secs_f64(),
        failed
    );
    let first_sample = samples.first().copied().unwrap_or(final_rss);
    println!(
        "events in flight after the run: {left}; RSS first sample {first_sample} KiB, final {final_rss} KiB, peak {} KiB",
        host.peak_rss_kib().unwrap_or(0)
    );
    host.stop().map_err(|e| e.to_string())?;
    Ok(left == 0 && failed == 0)
}
