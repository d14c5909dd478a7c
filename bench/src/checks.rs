//! The host's non-throughput targets: memory for many instances, the query command's time and
//! the time from start to every socket bound with 20 plugins.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kong_driver::{KongClient, LuaValue};
use serde_json::json;

use crate::{
    median,
    server::{quiet_on_cpu, Server},
};

const PLUGIN: &str = "rust-bench";
/// Kong's default workspace id, as it appears in every config.
const WS_ID: &str = "0dc6f45b-8f8d-40d2-a504-473544ee190b";
/// Emulated nginx workers, and distinct plugin configs (one per route) each of them starts.
const WORKERS: usize = 16;
const CONFIGS: usize = 500;
/// Plugins served at once in the start-up check.
const PLUGINS: usize = 20;
/// Runs of the dump and start-up checks (the median is reported).
const RUNS: usize = 7;

pub struct Checks {
    pub instance_starts: usize,
    pub live_instances: usize,
    pub instances_rss_kib: u64,
    pub dump_ms: f64,
    pub startup_ms: f64,
}

impl Checks {
    pub fn print(&self) {
        println!(
            "\nhost checks\n  {WORKERS} workers x {CONFIGS} configs: {} StartInstance -> {} live instances, RSS {:.1} MiB (peak)",
            self.instance_starts,
            self.live_instances,
            self.instances_rss_kib as f64 / 1024.0
        );
        println!(
            "  dump (query command, {PLUGINS} plugins in the dir): {:.1} ms, median of {RUNS}",
            self.dump_ms
        );
        println!(
            "  serve {PLUGINS} plugins, start to every socket bound: {:.1} ms, median of {RUNS}",
            self.startup_ms
        );
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "instance_starts": self.instance_starts,
            "live_instances": self.live_instances,
            "instances_peak_rss_kib": self.instances_rss_kib,
            "dump_ms": self.dump_ms,
            "startup_ms": self.startup_ms,
            "startup_plugins": PLUGINS,
        })
    }
}

/// Runs the three checks against fresh hosts pinned to `cpu`.
pub async fn run(host_bin: &Path, plugin: &Path, cpu: Option<usize>) -> Result<Checks, String> {
    let (instance_starts, live_instances, instances_rss_kib) =
        instances(host_bin, plugin, cpu).await?;
    let dir = std::env::temp_dir().join(format!("kong-rust-bench-{}-plugins", std::process::id()));
    let result = many_plugins(&dir, plugin).and_then(|plugins| {
        Ok(Checks {
            instance_starts,
            live_instances,
            instances_rss_kib,
            dump_ms: dump(host_bin, &dir, cpu)?,
            startup_ms: startup(host_bin, &dir, &plugins, cpu)?,
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Every worker starts every config, as Kong's workers do for 500 routes with the plugin: the
/// host must keep one instance per distinct config. Returns (starts, distinct ids, peak RSS).
async fn instances(
    host_bin: &Path,
    plugin: &Path,
    cpu: Option<usize>,
) -> Result<(usize, usize, u64), String> {
    let host = Server::host(host_bin, &[plugin], &[], PLUGIN, cpu)?;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let client = KongClient::new(host.socket());
            tokio::spawn(async move {
                for route in 0..CONFIGS {
                    let route_id = format!("00000000-0000-4000-8000-{route:012x}");
                    let config = json!({
                        "calls": 1,
                        "route_id": route_id,
                        "__key__": format!("plugins:{PLUGIN}:{route_id}::::{WS_ID}"),
                        "__plugin_id": format!("10000000-0000-4000-8000-{route:012x}"),
                        "__seq__": 1,
                        "__ws_id": WS_ID,
                    });
                    client
                        .start_instance(PLUGIN, &config.to_string())
                        .await
                        .map_err(|e| format!("StartInstance: {e}"))?;
                }
                Ok::<_, String>(CONFIGS)
            })
        })
        .collect();
    let mut starts = 0;
    for task in tasks {
        starts += task.await.map_err(|e| format!("instance task: {e}"))??;
    }
    // Read before GetStatus, whose reply (8,000 ids with their configs) costs memory itself.
    let rss = host.peak_rss_kib().ok_or("no VmHWM for the host")?;
    // Ids are per StartInstance; the plugin objects behind them are what costs memory.
    let status = KongClient::new(host.socket())
        .call("plugin.GetStatus", LuaValue::int(0))
        .await
        .map_err(|e| format!("GetStatus: {e}"))?;
    let live = rmpv::ext::from_value::<serde_json::Value>(status)
        .ok()
        .and_then(|s| s["Plugins"][PLUGIN]["LiveInstances"].as_u64())
        .ok_or("GetStatus has no LiveInstances")?;
    Ok((starts, live as usize, rss))
}

/// `PLUGINS` copies of rust-bench under distinct names, in `dir`. The name is a fixed-length
/// string that occurs once in the library, so each copy gets "rust-be-NN" in its place: 20
/// real plugins without building 20 crates. Returns the names.
fn many_plugins(dir: &Path, plugin: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(plugin).map_err(|e| format!("read {}: {e}", plugin.display()))?;
    let at: Vec<usize> = bytes
        .windows(PLUGIN.len())
        .enumerate()
        .filter(|(_, w)| *w == PLUGIN.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let [at] = at[..] else {
        return Err(format!(
            "{PLUGIN:?} occurs {} times in {}, not once",
            at.len(),
            plugin.display()
        ));
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    (1..=PLUGINS)
        .map(|n| {
            let name = format!("rust-be-{n:02}");
            let mut copy = bytes.clone();
            copy[at..at + PLUGIN.len()].copy_from_slice(name.as_bytes());
            // The file name the host tries first for this plugin name.
            let path = dir.join(format!("lib{}.so", name.replace('-', "_")));
            std::fs::write(&path, copy).map_err(|e| format!("write {}: {e}", path.display()))?;
            Ok(name)
        })
        .collect()
}

fn command(bin: &Path, cpu: Option<usize>) -> Command {
    let mut command = Command::new(bin);
    quiet_on_cpu(&mut command, cpu);
    command
}

/// Wall time of `kong-rust-host dump <one of them>`, as Kong runs it at every start.
fn dump(host_bin: &Path, dir: &Path, cpu: Option<usize>) -> Result<f64, String> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let status = command(host_bin, cpu)
            .args(["dump", "rust-be-07", "--plugins-dir"])
            .arg(dir)
            .status()
            .map_err(|e| format!("dump: {e}"))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            return Err(format!("dump exited with {status}"));
        }
    }
    Ok(median(times).unwrap_or(0.0))
}

/// Wall time from spawning `serve` to the last of the plugins' sockets existing.
fn startup(
    host_bin: &Path,
    dir: &Path,
    plugins: &[String],
    cpu: Option<usize>,
) -> Result<f64, String> {
    let mut times = Vec::new();
    for run in 0..RUNS {
        let sockets = dir.with_extension(format!("sockets-{run}"));
        std::fs::create_dir_all(&sockets)
            .map_err(|e| format!("create {}: {e}", sockets.display()))?;
        let paths: Vec<PathBuf> = plugins
            .iter()
            .map(|p| sockets.join(format!("{p}.socket")))
            .collect();
        let start = Instant::now();
        let mut child = command(host_bin, cpu)
            .arg("serve")
            .arg("--plugins-dir")
            .arg(dir)
            .arg("--socket-dir")
            .arg(&sockets)
            .spawn()
            .map_err(|e| format!("serve: {e}"))?;
        let mut bound = None;
        while start.elapsed() < Duration::from_secs(10) {
            if paths.iter().all(|p| p.exists()) {
                bound = Some(start.elapsed());
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("serve exited with {status}"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&sockets);
        let bound = bound.ok_or("not every socket was bound within 10 s")?;
        times.push(bound.as_secs_f64() * 1e3);
    }
    Ok(median(times).unwrap_or(0.0))
}
