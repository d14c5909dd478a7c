//! Instances keyed by config: 16 workers, one constructed instance, 16 ids; close semantics;
//! unknown ids; ids across restarts.

use e2e::{artifacts, get, start_instance, Setup};
use kong_driver::{run_event, EventEnd, KongClient, LuaValue, SimRequest};
use rmpv::Value;
use std::collections::HashSet;

fn setup() -> Setup {
    Setup::new(&[(&artifacts().hello, "librust_hello.so")])
}

/// What `worker` of a Kong node sends for one plugin entity: the same config, with bookkeeping
/// keys that differ between workers (per-worker `__seq__` before Kong 3.6) and in key order.
fn worker_config(worker: usize, message: &str) -> String {
    if worker.is_multiple_of(2) {
        format!(
            r#"{{"message":"{message}","__seq__":{worker},"__plugin_id":"p1","__key__":"plugins:rust-hello:::::ws"}}"#
        )
    } else {
        format!(
            r#"{{"__key__":"plugins:rust-hello:::::ws","__plugin_id":"p1","__ws_id":"ws","__seq__":{worker},"message":"{message}"}}"#
        )
    }
}

async fn status(kong: &KongClient) -> Value {
    kong.call("plugin.GetStatus", LuaValue::Nil).await.unwrap()
}

fn hello_counter(status: &Value, key: &str) -> u64 {
    get(get(get(status, "Plugins"), "rust-hello"), key)
        .as_u64()
        .unwrap()
}

async fn greeting(kong: &KongClient, id: i64) -> String {
    let mut request = SimRequest::new().header("host", "h");
    let outcome = run_event(kong, id, "access", &mut request).await.unwrap();
    assert!(matches!(outcome.end, EventEnd::Ret));
    request
        .upstream_headers()
        .get_str("x-hello")
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_workers_share_one_constructed_instance_until_the_last_close() {
    let setup = setup();
    let host = setup.start(&[]);
    let socket = host.socket("rust-hello");

    // 16 workers, each its own RPC client, start the same plugin entity at once.
    let starts = (0..16).map(|worker| {
        let kong = KongClient::new(&socket);
        tokio::spawn(async move {
            kong.start_instance("rust-hello", &worker_config(worker, "hi"))
                .await
                .unwrap()
                .id
        })
    });
    let mut ids = Vec::new();
    for start in starts {
        ids.push(start.await.unwrap());
    }
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        16,
        "every StartInstance gets its own id: {ids:?}"
    );

    let kong = KongClient::new(&socket);
    let report = status(&kong).await;
    assert_eq!(
        hello_counter(&report, "Constructed"),
        1,
        "constructed once: {report}"
    );
    assert_eq!(hello_counter(&report, "LiveInstances"), 1);
    let instances = get(get(get(&report, "Plugins"), "rust-hello"), "Instances")
        .as_array()
        .unwrap();
    assert_eq!(instances.len(), 16);
    let shared: HashSet<u64> = instances
        .iter()
        .map(|i| get(i, "SharedInstance").as_u64().unwrap())
        .collect();
    assert_eq!(shared.len(), 1, "all ids point at one instance");
    for &id in &ids {
        assert_eq!(greeting(&kong, id).await, "Hello hi from rust");
    }

    // Each worker closes its own id; the instance lives while any id refers to it.
    for &id in &ids[..15] {
        kong.close_instance(id).await.unwrap();
    }
    assert_eq!(hello_counter(&status(&kong).await, "LiveInstances"), 1);
    assert_eq!(greeting(&kong, ids[15]).await, "Hello hi from rust");
    let closed = kong.handle_event(ids[0], "access").await.unwrap_err();
    assert!(closed.is_no_plugin_instance(), "{closed}");

    kong.close_instance(ids[15]).await.unwrap();
    let report = status(&kong).await;
    assert_eq!(
        hello_counter(&report, "LiveInstances"),
        0,
        "dropped at the last close: {report}"
    );

    // The same config again is a new construction.
    let again = kong
        .start_instance("rust-hello", &worker_config(0, "hi"))
        .await
        .unwrap()
        .id;
    assert!(!distinct.contains(&again), "ids are never reused");
    assert_eq!(hello_counter(&status(&kong).await, "Constructed"), 2);
}

#[tokio::test]
async fn different_configs_are_different_instances() {
    let setup = setup();
    let host = setup.start(&[]);
    let (kong, a) = start_instance(&host, "rust-hello", &worker_config(0, "a")).await;
    let b = kong
        .start_instance("rust-hello", &worker_config(0, "b"))
        .await
        .unwrap()
        .id;
    assert_eq!(greeting(&kong, a).await, "Hello a from rust");
    assert_eq!(greeting(&kong, b).await, "Hello b from rust");
    let report = status(&kong).await;
    assert_eq!(hello_counter(&report, "Constructed"), 2);
    assert_eq!(hello_counter(&report, "LiveInstances"), 2);
}

#[tokio::test]
async fn unknown_instance_ids_say_no_plugin_instance() {
    let setup = setup();
    let host = setup.start(&[]);
    let kong = KongClient::new(host.socket("rust-hello"));
    let error = kong.handle_event(999_999, "access").await.unwrap_err();
    assert_eq!(error.server_message(), Some("no plugin instance 999999"));
    assert!(error.is_no_plugin_instance());
    let close = kong.close_instance(999_999).await.unwrap_err();
    assert_eq!(close.server_message(), Some("no plugin instance 999999"));
}

async fn start_many(socket: &std::path::Path, n: usize) -> Vec<i64> {
    let kong = KongClient::new(socket);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            kong.start_instance("rust-hello", &worker_config(i, &format!("m{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    ids
}

#[tokio::test]
async fn restarted_hosts_never_reuse_instance_ids_even_after_kill_9() {
    let setup = setup();
    let mut seen = HashSet::new();
    for round in 0..3 {
        let host = setup.start(&[]);
        let ids = start_many(&host.socket("rust-hello"), 20).await;
        for id in ids {
            assert!(
                (1..=i32::MAX as i64).contains(&id),
                "ids stay within i32: {id}"
            );
            assert!(seen.insert(id), "id {id} reused in round {round}");
        }
        if round == 0 {
            // kill -9 leaves the socket file behind: the next start must replace it.
            host.stop_with(libc::SIGKILL);
            assert!(setup.sockets.path().join("rust-hello.socket").exists());
        } else {
            assert!(host.stop().success());
        }
    }
    // Stale ids held by Kong's workers hit nothing after a restart.
    let host = setup.start(&[]);
    let kong = KongClient::new(host.socket("rust-hello"));
    for &id in seen.iter().take(5) {
        assert!(kong
            .handle_event(id, "access")
            .await
            .unwrap_err()
            .is_no_plugin_instance());
    }
}
