//! deploy/grafana/kong-rust-host.json against a live host's `/metrics`: every series a panel's
//! query names is one the host exports, with labels it exports, and every series the host
//! exports is on the dashboard.

use e2e::{artifacts, free_loopback_port, http_get, workspace_root, Setup};
use kong_driver::{run_event, KongClient, LuaValue, SimRequest};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

const PREFIX: &str = "kong_rust_host_";

/// Labels the host puts on its series, and those Prometheus adds when it scrapes.
const LABELS: [&str; 6] = ["plugin", "phase", "method", "le", "instance", "job"];

/// Every PromQL expression of the dashboard: panel queries and template-variable queries.
fn expressions(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(expr)) => found.push(expr.clone()),
                    _ => expressions(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, found)),
        _ => {}
    }
}

/// The `kong_rust_host_*` series names in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    text.match_indices(PREFIX)
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

/// Label names in `by (...)` groupings and `{...}` matchers of a PromQL expression.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for grouping in expr.split("by (").skip(1) {
        let list = grouping.split(')').next().unwrap_or_default();
        names.extend(list.split(',').map(|name| name.trim().to_string()));
    }
    for matchers in expr.split('{').skip(1) {
        let list = matchers.split('}').next().unwrap_or_default();
        for matcher in list.split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `{{plugin}}` legend templates are not in expressions; `$__rate_interval]` has no `{`.
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The live host's `/metrics` after events that make every series appear: returns, an exit, an
/// error, a panic, and an event Kong walks away from (reclaimed after `--kong-step-timeout`).
async fn live_metrics() -> String {
    let a = artifacts();
    let setup = Setup::new(&[
        (&a.hello, "librust_hello.so"),
        (&a.faulty, "libfixture_faulty.so"),
    ]);
    let port = free_loopback_port();
    let listen = format!("127.0.0.1:{port}");
    let host = setup.start(&["--kong-step-timeout", "1", "--metrics-listen", &listen]);

    let hello = KongClient::new(host.socket("rust-hello"));
    let id = hello.start_instance("rust-hello", "{}").await.unwrap().id;
    for mut request in [
        SimRequest::new().header("host", "h"),
        SimRequest::new().header("host", "h").header("x-deny", ""),
    ] {
        run_event(&hello, id, "access", &mut request).await.unwrap();
    }
    let faulty = KongClient::new(host.socket("rust-faulty"));
    let fid = faulty.start_instance("rust-faulty", "{}").await.unwrap().id;
    for fault in ["panic", "error"] {
        let mut request = SimRequest::new().header("x-fault", fault);
        run_event(&faulty, fid, "access", &mut request)
            .await
            .unwrap();
    }
    // Kong walks away after the first PDK call: reclaimed a second later.
    let mut silent = hello.connection().await.unwrap();
    silent.handle_event(id, "access").await.unwrap();
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = hello.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
        if status["EventsInFlight"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "not reclaimed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_series_on_the_dashboard_is_exported_by_a_live_host_and_every_exported_one_is_shown()
{
    let path = workspace_root().join("deploy/grafana/kong-rust-host.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        assert!(
            !panel["targets"].as_array().unwrap().is_empty(),
            "panel {} has no query",
            panel["title"]
        );
    }

    let metrics = live_metrics().await;
    // Sample lines only (not `# HELP`/`# TYPE`): series with a value now.
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|line| line.starts_with(PREFIX))
        .flat_map(series_names)
        .collect();
    let shown: BTreeSet<String> = exprs.iter().flat_map(|expr| series_names(expr)).collect();

    let unknown: Vec<&String> = shown.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries series the host does not export: {unknown:?}\n{metrics}"
    );
    let missing: Vec<&String> = exported.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "series the host exports that no panel shows: {missing:?}"
    );
    for expr in &exprs {
        for label in label_names(expr) {
            assert!(
                LABELS.contains(&label.as_str()),
                "label {label:?} in {expr} is not one the host's series carry"
            );
        }
    }
    // What the issue asks operators to see.
    for family in [
        "kong_rust_host_events_total",
        "kong_rust_host_errors_total",
        "kong_rust_host_pdk_calls_total",
        "kong_rust_host_event_duration_seconds_bucket",
        "kong_rust_host_reclaimed_events_total",
        "kong_rust_host_refused_total",
        "kong_rust_host_events_in_flight",
    ] {
        assert!(shown.contains(family), "{family}");
    }
}
