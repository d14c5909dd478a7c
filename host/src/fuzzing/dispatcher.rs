//! `dispatcher`: Kong's side of a connection as bytes, sent over a socket pair to a real
//! [`Server`] and [`Dispatcher`] serving [`FuzzPlugin`], and the replies checked.

use super::plugin::{FuzzPlugin, LIVE_INSTANCES};
use crate::{
    runtime::connection::Serves,
    runtime::dispatch::{Dispatcher, Policy},
    runtime::events::{Events, Timeouts},
    runtime::ids::InstanceIds,
    runtime::instances::Instances,
    runtime::loops::Loops,
    serve::{Limits, Server},
    wire::frame::{Frames, Scanner},
    wire::rpc::{self, MsgId},
    wire::Request,
};
use rmpv::Value;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{atomic::Ordering, Arc, OnceLock},
    time::Duration,
};

/// Input: one options byte, then the bytes Kong sends. The options pick what the socket serves
/// (the plugin, all plugins, another plugin) and the size of each read (1–63 bytes, or all at
/// once).
///
/// Instance and event ids are handed out by the host (event ids from the clock), so the input
/// cannot know them: an id below 256 in a CloseInstance, HandleEvent or Step stands for the
/// host's id with that index among those it handed out so far, as Kong would hold it. The seed
/// corpus refers to ids 0, 1, ….
///
/// Checks: nothing panics or hangs; a message with an integer msgid gets exactly one reply, a
/// well-formed `[1, msgid, error, result]` with the same msgid, whose result has the shape
/// Kong expects for the method; a message without one closes the connection; instance ids
/// behave (a new id is fresh, a closed or unknown one gets Kong's "no plugin instance" error, a
/// live one never does); the plugin's constructor never sees a config breaking its schema.
pub fn dispatcher(data: &[u8]) {
    let Some((&options, stream)) = data.split_first() else {
        return;
    };
    let serves = match options & 3 {
        0 => Serves::All,
        3 => Serves::One("another-plugin".into()),
        _ => Serves::One(<FuzzPlugin as kong_rust_pdk::__private::Exported>::NAME.into()),
    };
    let read_size = match (options >> 2) as usize {
        0 => stream.len().max(1),
        n => n,
    };
    let dispatcher = Arc::new(dispatcher_for_one_input());
    let (kong, host) = UnixStream::pair().expect("a socket pair");
    host.set_nonblocking(true).expect("a non-blocking socket");
    kong.set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("a read timeout");
    let server = {
        let _runtime = runtime().enter();
        let limits = Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_depth: MAX_DEPTH,
            max_connections: 1,
        };
        let server = Server::new(Arc::clone(&dispatcher), loops(), limits, &[])
            .expect("a server without sockets");
        server.adopt_stream(host, serves);
        server
    };
    let mut connection = Connection {
        kong,
        replies: Frames::new(usize::MAX, 1024),
        live: Vec::new(),
        events: Vec::new(),
    };
    connection.serve(stream, read_size);
    drop(connection);
    // The dispatcher going away would end every event; its server holds it until they end.
    dispatcher.events.end_all();
    drop((server, dispatcher));
    // Handlers still waiting for Kong wake up to "event ended" and let go of their instance.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while LIVE_INSTANCES.load(Ordering::Acquire) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} plugin instances outlived their dispatcher",
            LIVE_INSTANCES.load(Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The server's limits, scaled down so that fuzz inputs reach them.
const MAX_FRAME_BYTES: usize = 4096;
const MAX_DEPTH: usize = 16;

/// The loops, shared by every input, as starting threads for every input would be slow.
fn loops() -> Loops {
    static LOOPS: OnceLock<Loops> = OnceLock::new();
    LOOPS
        .get_or_init(|| Loops::new(8).expect("loop threads"))
        .clone()
}

/// A fresh dispatcher per input, so inputs do not depend on each other.
fn dispatcher_for_one_input() -> Dispatcher {
    // A state file that cannot be created: ids then start from the clock, with no disk writes.
    let ids = InstanceIds::new(PathBuf::from("/dev/null/kong-rust-host-fuzz-ids"));
    Dispatcher::new(
        vec![FuzzPlugin::loaded()],
        Instances::new(ids),
        Events::new(Timeouts {
            handler: Duration::from_secs(10),
            kong_step: Duration::from_secs(10),
            make_room_after: Duration::from_millis(10),
        }),
        Policy {
            max_instances: 4,
            max_events_per_plugin: 3,
            fail_open: Vec::new(),
        },
    )
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

struct Connection {
    /// Kong's end of the connection.
    kong: UnixStream,
    /// The host's replies as they arrive.
    replies: Frames,
    /// Instance ids started and not closed, in the order the host handed them out.
    live: Vec<i64>,
    /// Event ids the host answered with a PDK call.
    events: Vec<u64>,
}

impl Connection {
    /// Sends each complete message in `read_size` pieces and checks its answer, until the input
    /// ends or the host closes the connection.
    fn serve(&mut self, stream: &[u8], read_size: usize) {
        let mut frames = Frames::new(MAX_FRAME_BYTES, MAX_DEPTH);
        frames.buffer().extend_from_slice(stream);
        loop {
            match frames.next_value() {
                Ok(Some(message)) => {
                    if !self.exchange(message, read_size) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    // The host closes a connection it cannot follow: send it the rest.
                    let rest = std::mem::take(frames.buffer());
                    let _ = self.kong.write_all(&rest);
                    self.expect_closed();
                    return;
                }
            }
        }
    }

    /// One message and its answer; false when the connection is closed.
    fn exchange(&mut self, mut message: Value, read_size: usize) -> bool {
        self.use_handed_out_ids(&mut message);
        let msgid = match &message {
            Value::Array(parts) => match parts.get(1) {
                Some(Value::Integer(id)) => Some(*id),
                _ => None,
            },
            _ => None,
        };
        let request = rpc::parse(message.clone()).ok().map(|(_, request)| request);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).expect("Vec write");
        for piece in bytes.chunks(read_size) {
            if self.kong.write_all(piece).is_err() {
                return false;
            }
        }
        match (self.reply(), msgid) {
            (Some(reply), Some(msgid)) => {
                self.check_reply(msgid, request, &reply);
                true
            }
            (None, None) => false,
            (Some(reply), None) => panic!("answered a message that has no msgid: {reply:?}"),
            (None, Some(_)) => panic!("a request went unanswered: {message}"),
        }
    }

    /// The host's next reply; `None` when it closed the connection.
    fn reply(&mut self) -> Option<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        loop {
            let buffer = self.replies.buffer();
            if let Some(len) = Scanner::new(usize::MAX, 1024)
                .scan(buffer)
                .expect("the host writes MessagePack")
            {
                return Some(buffer.drain(..len).collect());
            }
            match self.kong.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(error) => panic!("no reply within {REPLY_TIMEOUT:?}: {error}"),
            }
        }
    }

    fn expect_closed(&mut self) {
        assert!(
            self.reply().is_none(),
            "the host answered what it cannot follow"
        );
    }

    fn use_handed_out_ids(&self, message: &mut Value) {
        let Value::Array(parts) = message else { return };
        let [_, _, Value::String(method), Value::Array(params)] = parts.as_mut_slice() else {
            return;
        };
        let (Some(method), Some(param)) = (method.as_str(), params.first_mut()) else {
            return;
        };
        match method {
            "plugin.CloseInstance" => substitute(param, &self.live),
            "plugin.HandleEvent" => substitute_entry(param, "InstanceId", &self.live),
            step if step.starts_with("plugin.Step") => {
                substitute_entry(param, "EventId", &self.events)
            }
            _ => {}
        }
    }

    fn check_reply(&mut self, msgid: MsgId, request: Option<Request>, reply: &[u8]) {
        assert_eq!(
            Scanner::new(reply.len(), 64).scan(reply),
            Ok(Some(reply.len())),
            "a reply is exactly one MessagePack value"
        );
        let value = rmpv::decode::read_value(&mut &reply[..]).expect("the reply decodes");
        let Ok([kind, id, error, result]) =
            <[Value; 4]>::try_from(value.as_array().cloned().unwrap_or_default())
        else {
            panic!("a reply is [1, msgid, error, result], not {value}");
        };
        assert_eq!(kind, Value::from(1), "{value}");
        assert_eq!(id, Value::Integer(msgid), "the reply's msgid");
        let outcome = match error {
            Value::Nil => Ok(result),
            Value::String(error) => {
                assert_eq!(result, Value::Nil, "{value}");
                Err(error.into_str().expect("error messages are UTF-8"))
            }
            other => panic!("the error of a reply is a string or nil, not {other}"),
        };
        self.follow(request, outcome);
    }

    /// Checks an answer against what Kong knows of the host's state, and updates it.
    fn follow(&mut self, request: Option<Request>, outcome: Result<Value, String>) {
        let no_instance = |id: i64| format!("no plugin instance {id}");
        let Some(request) = request else {
            assert!(outcome.is_err(), "an invalid request got a result");
            return;
        };
        match (request, outcome) {
            (Request::StartInstance { .. }, Ok(started)) => {
                let id = entry_of(&started, "Id").and_then(Value::as_i64);
                let id = id.unwrap_or_else(|| panic!("StartInstance answered {started}"));
                assert!(
                    !self.live.contains(&id),
                    "instance id {id} handed out twice"
                );
                self.live.push(id);
            }
            (Request::StartInstance { .. }, Err(error)) => {
                assert!(!error.contains("panicked"), "StartInstance: {error}");
            }
            (Request::CloseInstance { instance_id }, outcome) => {
                match (self.live.iter().position(|&id| id == instance_id), outcome) {
                    (Some(at), Ok(Value::Nil)) => {
                        self.live.remove(at);
                    }
                    (None, Err(error)) => assert_eq!(error, no_instance(instance_id)),
                    (at, outcome) => panic!(
                        "CloseInstance {instance_id} (live: {}) answered {outcome:?}",
                        at.is_some()
                    ),
                }
            }
            (Request::HandleEvent { instance_id, .. }, outcome) => {
                let live = self.live.contains(&instance_id);
                match outcome {
                    Ok(step) => {
                        assert!(live, "HandleEvent ran on instance {instance_id}, not live");
                        self.follow_step(&step);
                    }
                    Err(error) => assert_eq!(
                        error == no_instance(instance_id),
                        !live,
                        "HandleEvent on instance {instance_id} (live: {live}): {error}"
                    ),
                }
            }
            (Request::Step { .. } | Request::StepError { .. }, Ok(step)) => self.follow_step(&step),
            (Request::Step { .. } | Request::StepError { .. }, Err(_)) => {}
            (Request::GetStatus, outcome) => {
                let status = outcome.expect("GetStatus always answers");
                assert!(entry_of(&status, "Plugins").is_some_and(Value::is_map));
            }
            (Request::GetInstanceStatus { .. }, _) => {
                unreachable!("rpc::parse reads MsgPack:1, which has no GetInstanceStatus")
            }
        }
    }

    /// `{"EventId": id, "Data": "ret" | {"Method": m, "Args": [...]}}`.
    fn follow_step(&mut self, step: &Value) {
        let event_id = entry_of(step, "EventId").and_then(Value::as_u64);
        let event_id = event_id.unwrap_or_else(|| panic!("a step answer without EventId: {step}"));
        match entry_of(step, "Data") {
            Some(Value::String(ret)) if ret.as_str() == Some("ret") => {}
            Some(call)
                if entry_of(call, "Method").is_some_and(Value::is_str)
                    && entry_of(call, "Args").is_some_and(Value::is_array) =>
            {
                if !self.events.contains(&event_id) {
                    self.events.push(event_id);
                }
            }
            _ => panic!("a step answer's Data is \"ret\" or a PDK call: {step}"),
        }
    }
}

/// An id below 256 stands for the one with that index among `handed_out` (see [`dispatcher`]).
fn substitute<T: Copy + Into<Value>>(id: &mut Value, handed_out: &[T]) {
    if let Some(index) = id.as_u64().filter(|&index| index < 256) {
        if !handed_out.is_empty() {
            *id = handed_out[index as usize % handed_out.len()].into();
        }
    }
}

/// [`substitute`] for the id under `key` in a map.
fn substitute_entry<T: Copy + Into<Value>>(map: &mut Value, key: &str, handed_out: &[T]) {
    if let Value::Map(entries) = map {
        for (_, id) in entries.iter_mut().filter(|(k, _)| k.as_str() == Some(key)) {
            substitute(id, handed_out);
        }
    }
}

fn entry_of<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(entries) = map else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The fuzz plugin answers at once: a reply slower than this is a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
