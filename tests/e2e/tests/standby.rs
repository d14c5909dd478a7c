//! A standby with no gap (it holds the serving host's listening sockets), and a host that stops
//! because its parent exited only when told to (`--follow-parent`).

use e2e::{artifacts, Host, Setup, TempDir};
use kong_driver::{KongClient, SimRequest};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

fn hello() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

/// A serving host, and a second `serve` on the same dirs once it holds the serving host's
/// listening sockets.
fn serving_and_standby(setup: &Setup) -> (Host, Host) {
    let serving = setup.start(&[]);
    let standby = setup.spawn(&[]);
    let line = standby.wait_for_log("listening sockets", Duration::from_secs(10));
    assert!(
        line.contains(&format!("pid {} serves", serving.pid())) && line.contains("holding its 1"),
        "{line}"
    );
    assert!(serving
        .wait_for_log("stands by", Duration::from_secs(5))
        .contains(&format!("pid {}", standby.pid())));
    (serving, standby)
}

/// One request as Kong's worker makes it to a plugin server it has not talked to yet: a new
/// connection, StartInstance, then the access event with its PDK calls.
struct Attempt {
    started: Instant,
    /// The connect failed (refused, or no socket file).
    refused: bool,
    /// The pid whose serverPid notification the connection carried, once the event was
    /// answered in full; the error otherwise.
    answered_by: Result<i64, String>,
}

/// Makes requests on `socket` one after the other until `until` (a bounded loop, as a Kong
/// worker under load).
async fn kong_worker(socket: PathBuf, until: Instant) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let kong = KongClient::new(&socket);
        kong.set_read_timeout(Duration::from_secs(10));
        match kong.connection().await {
            Ok(conn) => kong.release(conn),
            Err(error) => {
                attempts.push(Attempt {
                    started,
                    refused: true,
                    answered_by: Err(error.to_string()),
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        let event = async {
            // Kong starts the instance again and reruns the event on "no plugin instance" (an
            // instance started on the old host after it offered its ids to the new one), as
            // often as it meets it (mp_rpc.lua's handle_event); here at most 3 times.
            let mut reruns = 0;
            loop {
                let id = kong.start_instance("rust-hello", "{}").await?.id;
                let mut request = SimRequest::new().header("host", "h");
                match kong_driver::run_event(&kong, id, "access", &mut request).await {
                    Err(error) if error.is_no_plugin_instance() && reruns < 3 => reruns += 1,
                    Err(error) => return Err(error),
                    Ok(_) => {
                        let ran = request.upstream_headers().get_str("x-hello").is_some();
                        return Ok::<_, kong_driver::Error>(ran);
                    }
                }
            }
        };
        let answered_by = match event.await {
            Ok(true) => kong.server_pid().ok_or_else(|| "no serverPid".to_string()),
            Ok(false) => Err("the plugin did not run".into()),
            Err(error) => Err(error.to_string()),
        };
        attempts.push(Attempt {
            started,
            refused: false,
            answered_by,
        });
    }
    attempts
}

/// Counts the moments `socket` is missing, checking every millisecond until `until`.
fn watch_socket_file(socket: PathBuf, until: Instant) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut missing = 0;
        while Instant::now() < until {
            if std::fs::symlink_metadata(&socket).is_err() {
                missing += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        missing
    })
}

/// Runs 4 Kong workers and the socket-file watch for `window`, calling `stop` (which returns
/// once the serving host is gone) after `before_stop`; every attempt, and when the host was gone.
async fn under_load(
    socket: &Path,
    window: Duration,
    before_stop: Duration,
    stop: impl FnOnce(),
) -> (Vec<Attempt>, usize, Instant) {
    let until = Instant::now() + window;
    let missing = watch_socket_file(socket.to_path_buf(), until);
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(kong_worker(socket.to_path_buf(), until)))
        .collect();
    tokio::time::sleep(before_stop).await;
    // Blocks this runtime thread until the host is gone; the workers run on the others.
    stop();
    let gone = Instant::now();
    let mut attempts = Vec::new();
    for worker in workers {
        attempts.extend(worker.await.unwrap());
    }
    (attempts, missing.join().unwrap(), gone)
}

fn refused(attempts: &[Attempt]) -> usize {
    attempts.iter().filter(|a| a.refused).count()
}

/// The attempts started after `gone`, each answered by `pid` or failing the test.
fn answered_after(attempts: &[Attempt], gone: Instant, pid: u32) -> usize {
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.started >= gone).collect();
    for attempt in &after {
        assert_eq!(
            attempt.answered_by.as_ref(),
            Ok(&i64::from(pid)),
            "an event started after the serving host was gone"
        );
    }
    after.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_serving_host_refuses_no_connect_and_the_standby_answers_every_later_event() {
    let setup = hello();
    let (serving, standby) = serving_and_standby(&setup);
    let old_pid = serving.pid();
    let socket = serving.socket("rust-hello");

    let (attempts, missing, gone) = under_load(
        &socket,
        Duration::from_millis(2500),
        Duration::from_millis(600),
        || {
            serving.stop_with(libc::SIGKILL);
        },
    )
    .await;

    assert_eq!(refused(&attempts), 0, "refused connects");
    assert_eq!(missing, 0, "moments without the socket file");
    let after = answered_after(&attempts, gone, standby.pid());
    assert!(after >= 10, "only {after} events after the kill");
    assert!(attempts
        .iter()
        .any(|a| a.answered_by == Ok(i64::from(old_pid))));
    let line = standby.wait_for_log("taking over", Duration::from_secs(1));
    assert!(
        line.contains(&format!("pid {old_pid} is gone"))
            && line.contains("accepting on the 1 sockets it passed"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_the_serving_host_hands_over_to_the_standby_with_no_refused_connect_or_failed_event(
) {
    let setup = hello();
    let (serving, standby) = serving_and_standby(&setup);
    let old_pid = serving.pid();
    let socket = serving.socket("rust-hello");
    let old_log = Arc::new(Mutex::new(String::new()));
    let status = Arc::new(Mutex::new(None));

    let (attempts, missing, gone) = under_load(
        &socket,
        Duration::from_millis(3000),
        Duration::from_millis(600),
        || {
            serving.signal(libc::SIGTERM);
            serving.wait_for_log("no event left here", Duration::from_secs(10));
            *old_log.lock().unwrap() = serving.log();
            *status.lock().unwrap() = Some(serving.wait(Duration::from_secs(10)));
        },
    )
    .await;

    assert_eq!(refused(&attempts), 0, "refused connects");
    assert_eq!(missing, 0, "moments without the socket file");
    let failed: Vec<&String> = attempts
        .iter()
        .filter_map(|a| a.answered_by.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "failed events: {failed:?}");
    let after = answered_after(&attempts, gone, standby.pid());
    assert!(after >= 10, "only {after} events after the handover");
    assert_eq!(status.lock().unwrap().unwrap().code(), Some(0));
    let old_log = old_log.lock().unwrap();
    let stop = old_log
        .lines()
        .find(|line| line.contains("took over"))
        .unwrap_or_else(|| panic!("no stop line in:\n{old_log}"));
    assert!(
        stop.contains(" WARN ")
            && stop.contains(&format!("stopping: pid {} took over", standby.pid())),
        "{stop}"
    );
    assert!(old_log.contains(&format!(
        "SIGTERM: asking the standby pid {}",
        standby.pid()
    )));
    assert!(standby
        .wait_for_log("taking over", Duration::from_secs(1))
        .contains(&format!("pid {old_pid} is stopping")));
    assert!(socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_standby_holds_the_sockets_of_the_first_once_it_serves_and_takes_over_from_it_too()
{
    let setup = hello();
    let (first, second) = serving_and_standby(&setup);
    let third = setup.spawn(&[]);
    third.wait_for_log(
        &format!("pid {} serves", first.pid()),
        Duration::from_secs(10),
    );
    first.stop_with(libc::SIGKILL);
    // One of the two takes over; the other stands by for it, holding the same sockets.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (serving, standby) = loop {
        assert!(Instant::now() < deadline, "no standby took over");
        if second.log().contains("ready: serving") {
            break (second, third);
        }
        if third.log().contains("ready: serving") {
            break (third, second);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    standby.wait_for_log(
        &format!("pid {} serves", serving.pid()),
        Duration::from_secs(10),
    );
    let socket = serving.socket("rust-hello");
    let (attempts, missing, gone) = under_load(
        &socket,
        Duration::from_millis(2000),
        Duration::from_millis(400),
        || {
            serving.stop_with(libc::SIGKILL);
        },
    )
    .await;
    assert_eq!(refused(&attempts), 0, "refused connects");
    assert_eq!(missing, 0, "moments without the socket file");
    assert!(answered_after(&attempts, gone, standby.pid()) >= 10);
}

#[tokio::test]
async fn a_standby_stopped_by_sigterm_says_so_and_the_serving_host_then_stops_as_without_one() {
    let setup = hello();
    let (serving, standby) = serving_and_standby(&setup);
    standby.signal(libc::SIGTERM);
    let line = standby.wait_for_log("stopping", Duration::from_secs(5));
    assert!(
        line.contains(" WARN ") && line.contains("SIGTERM: stopping (standing by)"),
        "{line}"
    );
    assert_eq!(standby.wait(Duration::from_secs(10)).code(), Some(0));

    let (kong, id) = e2e::hello_instance(&serving).await;
    let mut request = SimRequest::new().header("host", "h");
    kong_driver::run_event(&kong, id, "access", &mut request)
        .await
        .unwrap();
    let socket = serving.socket("rust-hello");
    serving.signal(libc::SIGTERM);
    let line = serving.wait_for_log("SIGTERM: stopping", Duration::from_secs(5));
    assert!(line.contains(" WARN "), "{line}");
    assert!(!serving.log().contains("asking the standby"));
    assert_eq!(serving.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_beside_an_upgrade_stands_by_for_the_new_host_and_takes_over_from_it() {
    let setup = hello();
    let (old, standby) = serving_and_standby(&setup);
    let new = setup.start(&["--upgrade"]);
    old.wait_for_log("no event left here", Duration::from_secs(10));
    assert_eq!(old.wait(Duration::from_secs(10)).code(), Some(0));
    // The lock passed from old to new without being free: the standby did not take over.
    standby.wait_for_log(
        &format!("pid {} serves", new.pid()),
        Duration::from_secs(10),
    );
    assert!(!standby.log().contains("taking over"));

    let socket = new.socket("rust-hello");
    let (attempts, missing, gone) = under_load(
        &socket,
        Duration::from_millis(2000),
        Duration::from_millis(400),
        || {
            new.stop_with(libc::SIGKILL);
        },
    )
    .await;
    assert_eq!(refused(&attempts), 0, "refused connects");
    assert_eq!(missing, 0, "moments without the socket file");
    assert!(answered_after(&attempts, gone, standby.pid()) >= 10);
}

/// `kong-rust-host serve … &` from a shell, once per log file, each started once the one before
/// logged `ready_line`; the shell exits after the last. The hosts' pids.
fn start_from_a_shell_that_exits(setup: &Setup, extra: &str, logs: &[(&Path, &str)]) -> Vec<u32> {
    let mut script = String::new();
    for (log, ready_line) in logs {
        script.push_str(&format!(
            "'{host}' serve --plugins-dir '{plugins}' --socket-dir '{sockets}' {extra} \
             </dev/null >/dev/null 2>'{log}' & echo $!; \
             for _ in $(seq 200); do grep -q '{ready_line}' '{log}' && break; sleep 0.05; done; ",
            host = artifacts().host.display(),
            plugins = setup.plugins.path().display(),
            sockets = setup.sockets.path().display(),
            log = log.display(),
        ));
    }
    let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(output.status.success());
    for (log, ready_line) in logs {
        assert!(std::fs::read_to_string(log).unwrap().contains(ready_line));
    }
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

/// The process's state letter (`Z` once it exited but is not reaped), `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn wait_until_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while process_state(pid).is_some_and(|state| state != 'Z') {
        assert!(Instant::now() < deadline, "pid {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_host_whose_parent_shell_exits_keeps_serving() {
    let setup = hello();
    let logs = TempDir::new("logs");
    let log = logs.path().join("host.log");
    let pid = start_from_a_shell_that_exits(&setup, "", &[(&log, "ready: serving")])[0];
    // The host checks its parent every second: give it three.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(process_state(pid).map(|state| state != 'Z'), Some(true));

    let kong = KongClient::new(setup.sockets.path().join("rust-hello.socket"));
    let id = kong.start_instance("rust-hello", "{}").await.unwrap().id;
    let mut request = SimRequest::new().header("host", "h");
    kong_driver::run_event(&kong, id, "access", &mut request)
        .await
        .unwrap();
    assert_eq!(
        request.upstream_headers().get_str("x-hello"),
        Some("Hello world from rust")
    );
    assert_eq!(kong.server_pid(), Some(i64::from(pid)));

    // SAFETY: kill(2) on the host this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_until_gone(pid, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("parent process"), "{log}");
    let stop = log.lines().find(|l| l.contains("stopping")).unwrap();
    assert!(
        stop.contains(" WARN ") && stop.contains("SIGTERM: stopping"),
        "{stop}"
    );
}

#[test]
fn a_host_told_to_follow_its_parent_stops_when_the_parent_shell_exits_saying_so() {
    let setup = hello();
    let logs = TempDir::new("logs");
    let log = logs.path().join("host.log");
    let pid =
        start_from_a_shell_that_exits(&setup, "--follow-parent", &[(&log, "ready: serving")])[0];
    wait_until_gone(pid, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log).unwrap();
    let stops: Vec<&str> = log.lines().filter(|l| l.contains("stopping")).collect();
    assert_eq!(stops.len(), 1, "{log}");
    assert!(
        stops[0].contains(" WARN ")
            && stops[0].contains("--follow-parent: the parent process")
            && stops[0].contains("exited: stopping"),
        "{}",
        stops[0]
    );
}

#[test]
fn a_serving_host_and_its_standby_told_to_follow_their_parent_both_stop_when_it_exits() {
    // Kong 3.4's shape: worker 0 starts one process per entry; that worker dies.
    let setup = hello();
    let logs = TempDir::new("logs");
    let (serving_log, standby_log) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let pids = start_from_a_shell_that_exits(
        &setup,
        "--follow-parent",
        &[
            (&serving_log, "ready: serving"),
            (&standby_log, "listening sockets"),
        ],
    );
    for pid in &pids {
        wait_until_gone(*pid, Duration::from_secs(10));
    }
    for log in [&serving_log, &standby_log] {
        let log = std::fs::read_to_string(log).unwrap();
        let stops: Vec<&str> = log.lines().filter(|l| l.contains("stopping")).collect();
        assert_eq!(stops.len(), 1, "{log}");
        assert!(stops[0].contains(" WARN "), "{}", stops[0]);
    }
}
