//! `plugin.GetStatus` byte for byte: `kong-rust-host status`, `doctor`, `wait-ready` and
//! operators' own scripts read this reply, so its field order, string types (str, never bin) and
//! integer widths (the smallest that holds the value) are part of the interface.

use e2e::{artifacts, get, hello_instance, Setup};
use kong_driver::{KongClient, LuaValue, RawConn, Request};
use rmp::encode as enc;
use rmpv::Value;
use std::time::{Duration, Instant};

const MSGID: u8 = 7;

/// Writes `text` as a MessagePack str, failing the test if the host sent anything else.
fn str_field(out: &mut Vec<u8>, value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a str, got {value:?}"));
    enc::write_str(out, text).unwrap();
}

/// Writes `value` as the smallest unsigned integer that holds it.
fn uint_field(out: &mut Vec<u8>, value: &Value, what: &str) {
    let number = value
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: expected an unsigned integer, got {value:?}"));
    enc::write_uint(out, number).unwrap();
}

fn entries<'a>(value: &'a Value, what: &str) -> &'a [(Value, Value)] {
    value
        .as_map()
        .unwrap_or_else(|| panic!("{what}: expected a map, got {value:?}"))
}

/// A map whose keys are strs and whose values are unsigned integers, in the order sent.
fn counts(out: &mut Vec<u8>, value: &Value, what: &str) {
    let entries = entries(value, what);
    enc::write_map_len(out, entries.len() as u32).unwrap();
    for (key, count) in entries {
        str_field(out, key, what);
        uint_field(out, count, what);
    }
}

/// One phase of `Stats`: the counters in this order, then the latency histogram.
fn phase_stats(out: &mut Vec<u8>, stats: &Value, phase: &str) {
    const COUNTERS: [&str; 7] = [
        "events",
        "pdk_calls",
        "exits",
        "errors",
        "panics",
        "abandoned",
        "refused",
    ];
    enc::write_map_len(out, COUNTERS.len() as u32 + 1).unwrap();
    for counter in COUNTERS {
        enc::write_str(out, counter).unwrap();
        uint_field(out, get(stats, counter), counter);
    }
    enc::write_str(out, "latency_us").unwrap();
    let latency = get(stats, "latency_us");
    let keys: Vec<&str> = entries(latency, phase)
        .iter()
        .map(|(key, _)| key.as_str().unwrap_or_default())
        .collect();
    assert!(
        keys.len() > 2
            && keys[..keys.len() - 2].iter().all(|k| k.starts_with("le_"))
            && keys[keys.len() - 2..] == ["le_inf", "sum"],
        "{phase} latency buckets: {keys:?}"
    );
    counts(out, latency, phase);
}

/// The reply `[1, MSGID, nil, status]` as today's host encodes `status`.
fn expected_reply(status: &Value) -> Vec<u8> {
    let mut out = vec![0x94, 0x01, MSGID, 0xc0];
    enc::write_map_len(&mut out, 4).unwrap();
    enc::write_str(&mut out, "Pid").unwrap();
    uint_field(&mut out, get(status, "Pid"), "Pid");
    enc::write_str(&mut out, "Plugins").unwrap();
    let plugins = entries(get(status, "Plugins"), "Plugins");
    enc::write_map_len(&mut out, plugins.len() as u32).unwrap();
    for (name, plugin) in plugins {
        str_field(&mut out, name, "plugin name");
        enc::write_map_len(&mut out, 8).unwrap();
        for field in ["Name", "Version", "Path"] {
            enc::write_str(&mut out, field).unwrap();
            str_field(&mut out, get(plugin, field), field);
        }
        enc::write_str(&mut out, "Instances").unwrap();
        let instances = get(plugin, "Instances").as_array().expect("Instances");
        enc::write_array_len(&mut out, instances.len() as u32).unwrap();
        for instance in instances {
            enc::write_map_len(&mut out, 5).unwrap();
            enc::write_str(&mut out, "Id").unwrap();
            uint_field(&mut out, get(instance, "Id"), "Id");
            enc::write_str(&mut out, "Name").unwrap();
            str_field(&mut out, get(instance, "Name"), "Name");
            enc::write_str(&mut out, "StartTime").unwrap();
            uint_field(&mut out, get(instance, "StartTime"), "StartTime");
            enc::write_str(&mut out, "Config").unwrap();
            str_field(&mut out, get(instance, "Config"), "Config");
            enc::write_str(&mut out, "SharedInstance").unwrap();
            uint_field(&mut out, get(instance, "SharedInstance"), "SharedInstance");
        }
        for field in ["LiveInstances", "Constructed"] {
            enc::write_str(&mut out, field).unwrap();
            uint_field(&mut out, get(plugin, field), field);
        }
        enc::write_str(&mut out, "Stats").unwrap();
        let phases = entries(get(plugin, "Stats"), "Stats");
        enc::write_map_len(&mut out, phases.len() as u32).unwrap();
        for (phase, stats) in phases {
            str_field(&mut out, phase, "Stats phase");
            phase_stats(&mut out, stats, phase.as_str().unwrap_or_default());
        }
        enc::write_str(&mut out, "Reclaimed").unwrap();
        let phases = entries(get(plugin, "Reclaimed"), "Reclaimed");
        enc::write_map_len(&mut out, phases.len() as u32).unwrap();
        for (phase, methods) in phases {
            str_field(&mut out, phase, "Reclaimed phase");
            counts(&mut out, methods, "Reclaimed methods");
        }
    }
    enc::write_str(&mut out, "EventsInFlight").unwrap();
    uint_field(&mut out, get(status, "EventsInFlight"), "EventsInFlight");
    enc::write_str(&mut out, "AllocatedBytes").unwrap();
    match get(status, "AllocatedBytes") {
        Value::Nil => enc::write_nil(&mut out).unwrap(),
        bytes => uint_field(&mut out, bytes, "AllocatedBytes"),
    }
    out
}

/// One access event that returns, and one Kong walks away from (reclaimed after the 1 s
/// Kong-step timeout), so every part of the status has entries.
async fn exercise(kong: &KongClient, id: i64) {
    let mut request = kong_driver::SimRequest::new().header("host", "status.example");
    kong_driver::run_event(kong, id, "access", &mut request)
        .await
        .unwrap();
    let mut silent = kong.connection().await.unwrap();
    silent.handle_event(id, "access").await.unwrap();
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap();
        if get(&status, "EventsInFlight").as_u64() == Some(0) {
            return;
        }
        assert!(Instant::now() < deadline, "not reclaimed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_status_keeps_its_field_order_str_types_and_smallest_integer_widths() {
    let setup = Setup::new(&[(&artifacts().hello, "librust_hello.so")]);
    let host = setup.start(&["--kong-step-timeout", "1"]);
    let (kong, id) = hello_instance(&host).await;
    exercise(&kong, id).await;

    let mut conn = RawConn::connect(host.socket("rust-hello")).await.unwrap();
    conn.send(&Request::new("plugin.GetStatus", LuaValue::Nil).encode(MSGID.into()))
        .await
        .unwrap();
    conn.read_value().await.unwrap(); // the serverPid notification, ahead of the first reply
    let (bytes, reply) = conn.read_value().await.unwrap();
    let status = &reply[3];
    let hello = get(get(status, "Plugins"), "rust-hello");
    assert_eq!(get(hello, "Instances").as_array().map(Vec::len), Some(1));
    assert_eq!(
        get(
            get(get(hello, "Reclaimed"), "access"),
            "kong.request.get_header"
        )
        .as_u64(),
        Some(1),
        "{status}"
    );
    assert_eq!(bytes, expected_reply(status), "{status}");
}
