//! Named scenarios of the runtime, in process: a real [`Server`] and [`Dispatcher`] serving a
//! plugin linked into the test, and Kong played over Unix socket pairs, byte for byte. Each is a
//! situation the execution model must get right whatever threads it runs handlers on.

use crate::{
    loader::LoadedPlugin,
    runtime::dispatch::{Dispatcher, Policy},
    runtime::events::{Events, Timeouts},
    runtime::ids::InstanceIds,
    runtime::instances::Instances,
    runtime::loops::{Loops, CAUGHT_AFTER},
    serve::{Limits, Server},
    wire::protobuf::{envelope, frame, messages as pb},
    wire::rpc::{self, StepData},
};
use kong_rust_pdk::{
    __private::{root_module, Exported},
    abi::{Phase, PluginModRef},
    prelude::*,
};
use prost::Message as _;
use rmpv::Value;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    thread,
    time::{Duration, Instant},
};

/// The plugin takes no settings.
#[derive(Deserialize, Schema)]
struct ScenarioConfig {}

/// Its access phase reads `x-block-ms`, runs plugin code that long (blocking its thread, as a
/// sleep or blocking I/O would), then reads `x-after`: two PDK calls around a stretch of
/// plugin code. With `x-block-ms: lock` it reads `x-after` holding a lock all its events share
/// instead: a lock held across a PDK call.
struct ScenarioPlugin;

static SHARED: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Plugin for ScenarioPlugin {
    type Config = ScenarioConfig;

    fn new(_: ScenarioConfig) -> Result<Self> {
        Ok(ScenarioPlugin)
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        if let Some(ms) = kong.request.get_header(BLOCK)? {
            if ms == "lock" {
                let _held = SHARED.lock();
                kong.request.get_header(AFTER)?;
                return Ok(());
            }
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        kong.request.get_header(AFTER)?;
        Ok(())
    }
}

const BLOCK: &str = "x-block-ms";
const AFTER: &str = "x-after";

impl Exported for ScenarioPlugin {
    const NAME: &'static str = "scenario";
    const VERSION: &'static str = "0.1.0";
    const PRIORITY: i64 = 1;
    const PHASES: &'static [Phase] = &[Phase::Access];
}

fn loaded() -> LoadedPlugin {
    static MODULE: OnceLock<PluginModRef> = OnceLock::new();
    let module = *MODULE.get_or_init(root_module::<ScenarioPlugin>);
    LoadedPlugin::from_module(module, Path::new("<in-process scenario plugin>"))
        .expect("the scenario plugin's metadata")
}

/// A serving host without sockets: Kong's connections are socket pairs handed to it.
struct Host {
    server: Arc<Server>,
    dispatcher: Arc<Dispatcher>,
    _runtime: tokio::runtime::Runtime,
}

/// How long a reply may take in these scenarios before the test fails.
const REPLY_WITHIN: Duration = Duration::from_secs(5);

impl Host {
    fn new(max_events_per_plugin: usize, make_room_after: Duration) -> Host {
        let ten_seconds = Duration::from_secs(10);
        Host::with_timeouts(
            max_events_per_plugin,
            make_room_after,
            ten_seconds,
            ten_seconds,
        )
    }

    fn with_timeouts(
        max_events_per_plugin: usize,
        make_room_after: Duration,
        handler: Duration,
        kong_step: Duration,
    ) -> Host {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // A state file that cannot be created: ids start from the clock, with no disk writes.
        let ids = InstanceIds::new(PathBuf::from("/dev/null/kong-rust-host-scenario-ids"));
        let dispatcher = Arc::new(Dispatcher::new(
            vec![loaded()],
            Instances::new(ids),
            Events::new(Timeouts {
                handler,
                kong_step,
                make_room_after,
            }),
            Policy {
                max_instances: 16,
                max_events_per_plugin,
                fail_open: Vec::new(),
            },
        ));
        let limits = Limits {
            max_frame_bytes: 1 << 20,
            max_depth: 64,
            max_connections: 64,
        };
        let server = {
            let _entered = runtime.enter();
            Server::new(
                Arc::clone(&dispatcher),
                Loops::new(32).expect("loop threads"),
                limits,
                &[],
            )
            .expect("a server without sockets")
        };
        Host {
            server,
            dispatcher,
            _runtime: runtime,
        }
    }

    /// A new Kong connection to it, in either protocol (its first bytes say which).
    fn connect(&self) -> KongSide {
        let (kong, host) = UnixStream::pair().expect("a socket pair");
        kong.set_read_timeout(Some(REPLY_WITHIN))
            .expect("a read timeout");
        // As a connection a predecessor handed over: no serverPid notification is owed.
        self.server
            .adopt_connection(host.into(), "scenario", Vec::new(), false);
        KongSide {
            stream: kong,
            msgid: 0,
        }
    }

    /// An instance of the scenario plugin, started on a connection of its own.
    fn instance(&self) -> i64 {
        let mut kong = self.connect();
        let param = map(&[("Name", "scenario".into()), ("Config", "{}".into())]);
        let reply = kong.call("plugin.StartInstance", param);
        let [_, _, Value::Nil, result] = &reply[..] else {
            panic!("StartInstance failed: {reply:?}");
        };
        field(result, "Id").as_i64().expect("an instance id")
    }
}

impl Host {
    /// Returns once `event`'s handler has its Step and has held its loop long enough for the
    /// watchdog to count the loop as caught: work arriving now goes elsewhere.
    fn until_caught(&self, event: u64) {
        let deadline = Instant::now() + REPLY_WITHIN;
        let running = || {
            let event = self.dispatcher.events.get(event);
            event.is_some_and(|event| event.waiting_on().is_none())
        };
        while !running() {
            assert!(
                Instant::now() < deadline,
                "event {event} never ran its Step"
            );
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(CAUGHT_AFTER * 3);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Handlers still waiting for Kong wake up to "event ended" instead of the deadline.
        self.dispatcher.events.end_all();
    }
}

/// Kong's end of one connection.
struct KongSide {
    stream: UnixStream,
    msgid: u32,
}

impl KongSide {
    fn next_msgid(&mut self) -> u32 {
        self.msgid += 1;
        self.msgid
    }

    /// Sends `[0, msgid, method, [param]]` and reads the reply, as a decoded array.
    fn call(&mut self, method: &str, param: Value) -> Vec<Value> {
        let msgid = self.next_msgid();
        self.send_request(msgid, method, param);
        self.read_reply()
    }

    fn send_request(&mut self, msgid: u32, method: &str, param: Value) {
        let request = Value::Array(vec![
            0.into(),
            msgid.into(),
            method.into(),
            Value::Array(vec![param]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &request).expect("Vec write");
        self.stream.write_all(&bytes).expect("Kong writes");
    }

    /// A HandleEvent of the access phase; its reply's event id.
    fn handle_event(&mut self, instance: i64) -> (u32, Vec<u8>) {
        let msgid = self.next_msgid();
        let param = map(&[
            ("InstanceId", instance.into()),
            ("EventName", "access".into()),
        ]);
        self.send_request(msgid, "plugin.HandleEvent", param);
        (msgid, self.read_frame())
    }

    /// Starts an access event: its HandleEvent is answered with the handler's first call,
    /// `get_header(x-block-ms)`. Returns the event's id.
    fn start_event(&mut self, instance: i64) -> u64 {
        let (msgid, reply) = self.handle_event(instance);
        let event = event_id(&reply);
        assert_eq!(reply, get_header(msgid, event, BLOCK));
        event
    }

    /// An access event start to end, Kong answering both header reads with nil.
    fn run_event(&mut self, instance: i64) {
        let event = self.start_event(instance);
        let msgid = self.step(event, None);
        assert_eq!(self.read_frame(), get_header(msgid, event, AFTER));
        let msgid = self.step(event, None);
        assert_eq!(self.read_frame(), ret(msgid, event));
    }

    /// Kong's answer to the event's last PDK call (a string, or nil), as Kong sends it.
    fn step(&mut self, event_id: u64, data: Option<&str>) -> u32 {
        let msgid = self.next_msgid();
        let mut encoded = Vec::new();
        let data = data.map_or(Value::Nil, Value::from);
        rmpv::encode::write_value(&mut encoded, &data).expect("Vec write");
        let request = rpc::step_request(msgid.into(), event_id, Ok(&encoded));
        self.stream.write_all(&request).expect("Kong writes");
        msgid
    }

    fn read_reply(&mut self) -> Vec<Value> {
        match rmpv::decode::read_value(&mut self.stream).expect("a reply in time") {
            Value::Array(parts) if parts.len() == 4 => parts,
            other => panic!("not a reply: {other:?}"),
        }
    }

    /// The next reply's exact bytes.
    fn read_frame(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let value = rmpv::decode::read_value(&mut Recorder {
            inner: &mut self.stream,
            seen: &mut bytes,
        })
        .expect("a reply in time");
        assert!(matches!(value, Value::Array(_)), "not a reply: {value:?}");
        bytes
    }

    /// Asserts that exactly `expected` arrives next.
    fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0; expected.len()];
        self.stream.read_exact(&mut got).expect("bytes in time");
        assert_eq!(got, expected);
    }

    /// Sends one ProtoBuf:1 frame.
    fn send_frame(&mut self, payload: &[u8]) {
        self.stream
            .write_all(&frame::framed(payload))
            .expect("Kong writes");
    }

    /// A ProtoBuf:1 HandleEvent of the access phase, with `sequence`.
    fn handle_event_over_protobuf(&mut self, sequence: i64, instance: i64) {
        let call = pb::RpcCall {
            sequence,
            call: Some(pb::rpc_call::Call::CmdHandleEvent(pb::CmdHandleEvent {
                instance_id: instance.try_into().expect("an int32 id"),
                event_name: "access".into(),
            })),
        };
        self.send_frame(&call.encode_to_vec());
    }

    /// Asserts that nothing arrives within `quiet`.
    fn expect_nothing_for(&mut self, quiet: Duration) {
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let mut byte = [0];
        let read = self.stream.read(&mut byte);
        self.stream.set_read_timeout(Some(REPLY_WITHIN)).unwrap();
        assert!(read.is_err(), "unexpected bytes from the host: {read:?}");
    }
}

/// Keeps the bytes a decoder reads.
struct Recorder<'a> {
    inner: &'a mut UnixStream,
    seen: &'a mut Vec<u8>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(key, value)| (Value::from(*key), value.clone()))
            .collect(),
    )
}

fn field<'a>(map: &'a Value, key: &str) -> &'a Value {
    map.as_map()
        .and_then(|entries| entries.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

/// The event id a Step reply (as bytes) names.
fn event_id(reply: &[u8]) -> u64 {
    let value = rmpv::decode::read_value(&mut &reply[..]).expect("a reply");
    let Value::Array(parts) = value else {
        panic!("not a reply: {value:?}")
    };
    assert_eq!(parts[2], Value::Nil, "an error reply: {parts:?}");
    field(&parts[3], "EventId").as_u64().expect("an event id")
}

/// The bytes of a Step reply asking Kong for `kong.request.get_header(header)`.
fn get_header(msgid: u32, event_id: u64, header: &str) -> Vec<u8> {
    let mut args = Vec::new();
    rmpv::encode::write_value(&mut args, &Value::Array(vec![header.into()])).expect("Vec write");
    let method = "kong.request.get_header";
    rpc::step_reply(
        msgid.into(),
        event_id,
        StepData::Call {
            method,
            args: &args,
        },
    )
}

fn ret(msgid: u32, event_id: u64) -> Vec<u8> {
    rpc::step_reply(msgid.into(), event_id, StepData::Ret)
}

#[test]
fn a_step_that_arrives_while_its_handler_runs_is_refused_and_the_handler_answers_on() {
    let host = Host::new(8, Duration::from_secs(1));
    let instance = host.instance();
    let (mut a, mut b) = (host.connect(), host.connect());
    let event = a.start_event(instance);

    // The handler runs plugin code for 300 ms once it has this answer.
    let resumed = a.step(event, Some("300"));
    thread::sleep(Duration::from_millis(50));
    let early = b.step(event, None);
    let refusal = format!("event {event} is still running its previous step");
    assert_eq!(b.read_frame(), rpc::error_reply(early.into(), &refusal));

    // The refused Step changed nothing: the handler's next call answers the Step it ran on.
    assert_eq!(a.read_frame(), get_header(resumed, event, AFTER));
    let last = a.step(event, None);
    assert_eq!(a.read_frame(), ret(last, event));
}

#[test]
fn a_step_on_another_connection_reaches_its_handler_and_is_answered_there() {
    let host = Host::new(8, Duration::from_secs(1));
    let instance = host.instance();
    let (mut a, mut b) = (host.connect(), host.connect());
    let event = a.start_event(instance);

    // Kong's pool handed the event's next call another connection.
    let hopped = b.step(event, None);
    assert_eq!(b.read_frame(), get_header(hopped, event, AFTER));
    a.expect_nothing_for(Duration::from_millis(100));
    let back = a.step(event, None);
    assert_eq!(a.read_frame(), ret(back, event));

    // Both connections serve the next event.
    for kong in [&mut a, &mut b] {
        let (msgid, reply) = kong.handle_event(instance);
        assert_eq!(reply, get_header(msgid, event_id(&reply), BLOCK));
    }
}

#[test]
fn a_plugin_at_its_limit_takes_the_place_of_the_event_kong_walked_away_from() {
    let make_room_after = Duration::from_millis(100);
    let host = Host::new(1, make_room_after);
    let instance = host.instance();
    let (mut a, mut b) = (host.connect(), host.connect());
    let (_, reply) = a.handle_event(instance);
    let walked_away = event_id(&reply);

    // Kong never answers that event's call: the next one waits for its place, then takes it.
    let asked = Instant::now();
    let (msgid, reply) = b.handle_event(instance);
    let newer = event_id(&reply);
    assert!(
        asked.elapsed() >= make_room_after / 2,
        "{:?}",
        asked.elapsed()
    );
    assert_ne!(newer, walked_away);
    assert_eq!(reply, get_header(msgid, newer, BLOCK));

    let late = a.step(walked_away, None);
    let gone = format!("event id {walked_away} not found");
    assert_eq!(a.read_frame(), rpc::error_reply(late.into(), &gone));
    let next = b.step(newer, None);
    assert_eq!(b.read_frame(), get_header(next, newer, AFTER));
}

#[test]
fn handlers_blocked_in_plugin_code_on_every_core_at_once_stall_no_other_event() {
    let host = Host::new(64, Duration::from_secs(1));
    let instance = host.instance();
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let block = Duration::from_millis(1500);
    let mut blocked = Vec::new();
    for _ in 0..cores.max(2) {
        let mut kong = host.connect();
        let (_, reply) = kong.handle_event(instance);
        let event = event_id(&reply);
        let msgid = kong.step(event, Some(&block.as_millis().to_string()));
        blocked.push((kong, event, msgid));
    }
    thread::sleep(Duration::from_millis(50));

    // While every one of those runs plugin code, another event runs start to end, and
    // GetStatus is answered.
    let started = Instant::now();
    let mut other = host.connect();
    other.run_event(instance);
    let status = other.call("plugin.GetStatus", Value::Nil);
    assert_eq!(status[2], Value::Nil, "{status:?}");
    assert!(
        started.elapsed() < block / 3,
        "other events waited {:?} on blocked handlers",
        started.elapsed()
    );

    for (mut kong, event, msgid) in blocked {
        assert_eq!(kong.read_frame(), get_header(msgid, event, AFTER));
    }
}

/// The frames of a ProtoBuf:1 `kong.request.get_header(header)` call.
fn get_header_over_protobuf(header: &str) -> Vec<u8> {
    let name = pb::String { v: header.into() };
    envelope::pdk_call("kong.request.get_header", &name.encode_to_vec())
}

#[test]
fn a_protobuf_handler_blocked_in_plugin_code_stalls_no_event_of_either_protocol() {
    let host = Host::new(64, Duration::from_secs(1));
    let instance = host.instance();
    let block = Duration::from_millis(1500);
    let mut blocked = host.connect();
    blocked.handle_event_over_protobuf(2, instance);
    blocked.expect(&get_header_over_protobuf(BLOCK));
    let value = pb::String {
        v: block.as_millis().to_string().into(),
    };
    blocked.send_frame(&value.encode_to_vec());
    thread::sleep(Duration::from_millis(50));

    let started = Instant::now();
    // A ProtoBuf:1 event start to end: Kong answers each header read with nil (an empty frame).
    let mut other = host.connect();
    other.handle_event_over_protobuf(2, instance);
    for header in [BLOCK, AFTER] {
        other.expect(&get_header_over_protobuf(header));
        other.send_frame(&[]);
    }
    other.expect(&envelope::event_end(2));
    // And a MsgPack:1 one.
    let mut msgpack = host.connect();
    msgpack.run_event(instance);
    assert!(
        started.elapsed() < block / 3,
        "other events waited {:?} on a blocked handler",
        started.elapsed()
    );

    blocked.expect(&get_header_over_protobuf(AFTER));
    blocked.send_frame(&[]);
    blocked.expect(&envelope::event_end(2));
}

/// What a Step reply (as bytes) asks Kong to call, and with what.
fn called(reply: &[u8]) -> (String, Value) {
    let value = rmpv::decode::read_value(&mut &reply[..]).expect("a reply");
    let Value::Array(parts) = value else {
        panic!("not a reply: {value:?}")
    };
    let data = field(&parts[3], "Data");
    let method = field(data, "Method").as_str().expect("a method name");
    (method.to_string(), field(data, "Args").clone())
}

#[test]
fn an_event_stalled_behind_a_blocked_handler_on_its_loop_keeps_its_place() {
    let make_room_after = Duration::from_millis(100);
    let host = Host::new(2, make_room_after);
    let instance = host.instance();
    // Two events started together, on the loop that takes work first.
    let (mut a, mut b) = (host.connect(), host.connect());
    let blocking = a.start_event(instance);
    let stalled = b.start_event(instance);

    // One runs plugin code for 800 ms; Kong answers the other at once, but that answer waits
    // unread while their loop is held.
    let blocked = a.step(blocking, Some("800"));
    host.until_caught(blocking);
    let answered = b.step(stalled, None);
    thread::sleep(make_room_after * 2);

    // At the limit, a newer event does not take the stalled one's place: it is refused.
    let mut c = host.connect();
    let (_, reply) = c.handle_event(instance);
    let (method, args) = called(&reply);
    assert_eq!(method, "kong.response.exit");
    assert_eq!(args[0], Value::from(503), "{args:?}");

    // Once the loop is free, both go on where they were.
    assert_eq!(b.read_frame(), get_header(answered, stalled, AFTER));
    assert_eq!(a.read_frame(), get_header(blocked, blocking, AFTER));
}

#[test]
fn a_lock_held_across_a_pdk_call_costs_its_thread_both_events_and_a_connection_but_nothing_else() {
    let second = Duration::from_secs(1);
    let host = Host::with_timeouts(8, Duration::from_secs(1), second, second);
    let instance = host.instance();
    // Two events on the loop that takes work first: the first holds the lock across a PDK
    // call, the second waits for it, holding the thread the first needs to release it.
    let (mut a, mut b) = (host.connect(), host.connect());
    let holder = a.start_event(instance);
    let waiter = b.start_event(instance);
    let held = a.step(holder, Some("lock"));
    assert_eq!(a.read_frame(), get_header(held, holder, AFTER));
    let stuck = b.step(waiter, Some("lock"));
    host.until_caught(waiter);

    // Other events run on another loop meanwhile.
    let mut other = host.connect();
    other.run_event(instance);

    // Past --event-timeout the reaper gives the waiting handler up...
    thread::sleep(second + Duration::from_millis(100));
    host.dispatcher.reclaim_abandoned();
    let given_up = "scenario access: handler did not answer within 1s";
    assert_eq!(b.read_frame(), rpc::error_reply(stuck.into(), given_up));
    // ...and the holder, stalled behind it longer than that, is reclaimed too.
    thread::sleep(second);
    host.dispatcher.reclaim_abandoned();
    assert_eq!(host.dispatcher.events.in_flight(), 0);
    // Its connection is lost with the thread (the holder was waiting on it there); Kong's next
    // call for it on another connection learns that it is gone.
    let late = other.step(holder, None);
    let gone = format!("event id {holder} not found");
    assert_eq!(other.read_frame(), rpc::error_reply(late.into(), &gone));
}
