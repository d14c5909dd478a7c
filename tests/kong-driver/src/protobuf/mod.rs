//! Kong's ProtoBuf:1 client (`kong/runloop/plugin_servers/rpc/pb_rpc.lua`, Kong 3.8+), byte
//! for byte: a 4-byte native-endian length before every message; one pooled connection per
//! call, held for a whole event while the server sends PDK calls (a method-name frame and an
//! argument frame, answered with one reply frame) until an empty name frame; then the
//! `RpcReturn`, whose `sequence` must be the call's.

mod lua;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prost_reflect::MessageDescriptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::client::{DEFAULT_READ_TIMEOUT, MAX_IDLE};
use crate::error::{Error, Result};
use crate::event::{is_terminal, EventEnd, EventOutcome, Exit, PdkCall, PdkResponder};
use crate::value::LuaValue;

pub use lua::{decode as pb_decode, encode as pb_encode, message as pb_message};

/// One PDK method as `load_service` registers it.
#[derive(Debug, Clone)]
pub struct Method {
    /// `Service.Rpc`, e.g. `Kong.Request_GetHeader`.
    pub rpc: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

/// `load_service`: every rpc of every service, by the PDK name Kong looks it up by: the
/// `MethodName` option, or the rpc's name with `_` as `.` and camel case as snake case.
pub fn service() -> &'static HashMap<String, Method> {
    static SERVICE: OnceLock<HashMap<String, Method>> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let pool = lua::pool();
        let option = pool.get_extension_by_name("kong_plugin_protocol.MethodName");
        let mut methods = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                let rpc = format!("{}.{}", service.name(), method.name());
                let named = option.as_ref().and_then(|option| {
                    let options = method.options();
                    options
                        .has_extension(option)
                        .then(|| options.get_extension(option).as_str().map(str::to_owned))
                        .flatten()
                });
                let name = named.unwrap_or_else(|| derived_name(&rpc));
                methods.insert(
                    name,
                    Method {
                        rpc,
                        input: method.input(),
                        output: method.output(),
                    },
                );
            }
        }
        methods
    })
}

/// `name:gsub('_', '.'):gsub('([a-z]%d*)([A-Z])', '%1_%2'):lower()`.
pub fn derived_name(rpc: &str) -> String {
    let chars: Vec<char> = rpc.replace('_', ".").chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_lowercase() {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_uppercase() {
                out.extend(&chars[i..j]);
                out.push('_');
                out.push(chars[j]);
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out.to_lowercase()
}

/// Kong's side of ProtoBuf:1 for one nginx worker: its `Rpc` object's `msg_id` and the
/// worker's keepalive pool for the socket. Cheap to clone; clones share both.
#[derive(Debug, Clone)]
pub struct ProtoBufClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    msg_id: AtomicI64,
    read_timeout_ms: AtomicU64,
    opened: AtomicU64,
    idle: Mutex<VecDeque<UnixStream>>,
}

/// What `cmd_start_instance` (or `cmd_get_instance_status`) returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `instance_status.instance_id`, the only field Kong uses.
    pub id: i64,
    /// The whole `RpcReturn` as lua-protobuf decodes it.
    pub reply: LuaValue,
}

impl ProtoBufClient {
    /// A client for the server socket at `path`. Nothing is connected yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        ProtoBufClient {
            inner: Arc::new(Inner {
                path: path.as_ref().to_path_buf(),
                msg_id: AtomicI64::new(0),
                read_timeout_ms: AtomicU64::new(DEFAULT_READ_TIMEOUT.as_millis() as u64),
                opened: AtomicU64::new(0),
                idle: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Sets how long any single read may wait (Kong: 60 s). Affects all clones.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner.read_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// How many connections this client has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// How many connections sit idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle().len()
    }

    /// `Rpc:call_start_instance`: `config` is the plugin's configuration as JSON text.
    pub async fn start_instance(&self, name: &str, config_json: &str) -> Result<Instance> {
        let data = LuaValue::map([("name", name), ("config", config_json)]);
        let reply = self
            .call::<crate::sim::SimRequest>("cmd_start_instance", data, None)
            .await?
            .0;
        Instance::from_reply(reply)
    }

    /// `Rpc:call_close_instance` (Kong ignores what it returns).
    pub async fn close_instance(&self, id: i64) -> Result<LuaValue> {
        let data = LuaValue::map([("instance_id", LuaValue::int(id))]);
        Ok(self
            .call::<crate::sim::SimRequest>("cmd_close_instance", data, None)
            .await?
            .0)
    }

    /// `cmd_get_instance_status`.
    pub async fn instance_status(&self, id: i64) -> Result<Instance> {
        let data = LuaValue::map([("instance_id", LuaValue::int(id))]);
        Instance::from_reply(
            self.call::<crate::sim::SimRequest>("cmd_get_instance_status", data, None)
                .await?
                .0,
        )
    }

    /// `Rpc:handle_event`'s call: `cmd_handle_event`, then the PDK loop, each call answered by
    /// `responder` as Kong's PDK would. `Err` is what `handle_event` sees: Kong restarts the
    /// instance and replays the phase when it says "closed" or "no plugin instance"
    /// ([`Error::kong_replays`]), and otherwise answers the client 500 (Kong 3.8+).
    pub async fn run_event(
        &self,
        instance_id: i64,
        phase: &str,
        responder: &mut impl PdkResponder,
    ) -> Result<EventOutcome> {
        let data = LuaValue::map([
            ("instance_id", LuaValue::int(instance_id)),
            ("event_name", LuaValue::str(phase)),
        ]);
        let mut bridge = Bridge {
            responder,
            calls: Vec::new(),
            exit: None,
        };
        let (_, sequence) = self
            .call("cmd_handle_event", data, Some(&mut bridge))
            .await?;
        Ok(EventOutcome {
            event_id: sequence,
            end: bridge.exit.map_or(EventEnd::Ret, EventEnd::Exit),
            calls: bridge.calls,
        })
    }

    /// `Rpc:call`: the decoded `RpcReturn` and the call's sequence.
    async fn call<R: PdkResponder>(
        &self,
        method: &str,
        data: LuaValue,
        bridge: Option<&mut Bridge<'_, R>>,
    ) -> Result<(LuaValue, i64)> {
        let sequence = self.inner.msg_id.fetch_add(1, Ordering::Relaxed) + 2;
        let mut stream = self.checkout().await?;
        let call = LuaValue::Map(vec![
            (LuaValue::str("sequence"), LuaValue::int(sequence)),
            (LuaValue::str(method), data),
        ]);
        let rpc_call = pb_encode(&pb_message("kong_plugin_protocol.RpcCall"), &call)
            .map_err(Error::Protocol)?;
        stream.write_all(&frame(&rpc_call)).await?;
        let timeout = self.read_timeout();
        if let Some(bridge) = bridge {
            loop {
                let name = read_frame(&mut stream, timeout).await?;
                if name.is_empty() {
                    break;
                }
                let args = read_frame(&mut stream, timeout).await?;
                let method = String::from_utf8_lossy(&name).into_owned();
                let reply = bridge.call_pdk(&method, &args).map_err(Error::Kong)?;
                if bridge.exit.is_some() {
                    // kong.response.exit yields the handler's coroutine (access) or ends the
                    // request: Kong writes no reply, reads nothing more, and never pools the
                    // connection.
                    return Ok((LuaValue::Nil, sequence));
                }
                stream.write_all(&frame(&reply)).await?;
            }
        }
        let reply = read_frame(&mut stream, timeout).await?;
        self.release(stream);
        let reply = pb_decode(&pb_message("kong_plugin_protocol.RpcReturn"), &reply)
            .map_err(|error| Error::Protocol(format!("assertion failed: {error}")))?;
        let got = lua_field(&reply, "sequence");
        if got != LuaValue::int(sequence) {
            return Err(Error::Protocol(format!(
                "assertion failed: RpcReturn sequence {got:?}, the call's is {sequence}"
            )));
        }
        Ok((reply, sequence))
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.read_timeout_ms.load(Ordering::Relaxed))
    }

    async fn checkout(&self) -> Result<UnixStream> {
        if let Some(stream) = self.lock_idle().pop_front() {
            return Ok(stream);
        }
        let stream = UnixStream::connect(&self.inner.path)
            .await
            .map_err(|source| Error::Connect {
                path: self.inner.path.clone(),
                source,
            })?;
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// `c:setkeepalive()`: only after a whole call was read.
    fn release(&self, stream: UnixStream) {
        let mut idle = self.lock_idle();
        idle.push_front(stream);
        idle.truncate(MAX_IDLE);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<UnixStream>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Instance {
    fn from_reply(reply: LuaValue) -> Result<Self> {
        let status = lua_field(&reply, "instance_status");
        match lua_field(&status, "instance_id") {
            LuaValue::Num(id) => Ok(Instance {
                id: id as i64,
                reply,
            }),
            // Kong indexes `status.instance_status.instance_id`: a Lua error without them.
            other => Err(Error::Protocol(format!(
                "attempt to index instance_status: no instance id in {reply:?} ({other:?})"
            ))),
        }
    }
}

/// The PDK side of one event: `call_pdk` with the responder as Kong's PDK.
struct Bridge<'a, R: PdkResponder> {
    responder: &'a mut R,
    calls: Vec<PdkCall>,
    exit: Option<Exit>,
}

impl<R: PdkResponder> Bridge<'_, R> {
    /// `call_pdk`: the reply frame, or the error `Rpc:call` returns (`method not found`) or the
    /// Lua error Kong raises (an undecodable argument).
    fn call_pdk(&mut self, method: &str, args: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let Some(found) = service().get(method) else {
            return Err(format!("method {method:?} not found"));
        };
        let arg = pb_decode(&found.input, args)?;
        let args: Vec<rmpv::Value> = lua::unwrap(&lua::type_name(&found.input), arg)
            .iter()
            .map(|v| rmpv::decode::read_value(&mut &v.to_bytes()[..]).expect("LuaValue packs"))
            .collect();
        let result = self.responder.respond(method, &args);
        self.calls.push(PdkCall {
            method: method.to_owned(),
            args: args.clone(),
        });
        if is_terminal(method) {
            self.exit = Some(Exit {
                method: method.to_owned(),
                args,
            });
        }
        match lua::wrap(&lua::type_name(&found.output), result) {
            None => Ok(Vec::new()),
            Some(reply) => pb_encode(&found.output, &reply),
        }
    }
}

/// `t[name]` of a decoded table.
pub fn lua_field(table: &LuaValue, name: &str) -> LuaValue {
    match table {
        LuaValue::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, LuaValue::Str(s) if s == name.as_bytes()))
            .map_or(LuaValue::Nil, |(_, v)| v.clone()),
        _ => LuaValue::Nil,
    }
}

/// `st_pack("I", #msg) .. msg`: the length as a native-endian unsigned int.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_ne_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// `read_frame`: `c:receive(4)`, then `c:receive(len)`; ngx's errors are "closed" and
/// "timeout".
async fn read_frame(stream: &mut UnixStream, timeout: Duration) -> Result<Vec<u8>> {
    let mut length = [0u8; 4];
    receive(stream, &mut length, timeout).await?;
    let mut payload = vec![0u8; u32::from_ne_bytes(length) as usize];
    receive(stream, &mut payload, timeout).await?;
    Ok(payload)
}

async fn receive(stream: &mut UnixStream, buf: &mut [u8], timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, stream.read_exact(buf)).await {
        Err(_) => Err(Error::Timeout(timeout)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Closed),
        Ok(Err(error)) => Err(Error::Io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_derived_as_load_service_does() {
        assert_eq!(
            derived_name("Kong.Service_Request_SetHeader"),
            "kong.service.request.set_header"
        );
        assert_eq!(
            derived_name("Kong.Client_GetForwardedIp"),
            "kong.client.get_forwarded_ip"
        );
        assert_eq!(derived_name("Kong.Nginx_GetVar"), "kong.nginx.get_var");
    }

    #[test]
    fn kongs_rpc_call_is_encoded_field_by_field() {
        let call = LuaValue::Map(vec![
            (LuaValue::str("sequence"), LuaValue::int(2)),
            (
                LuaValue::str("cmd_handle_event"),
                LuaValue::map([
                    ("instance_id", LuaValue::int(7)),
                    ("event_name", LuaValue::str("access")),
                ]),
            ),
        ]);
        let bytes = pb_encode(&pb_message("kong_plugin_protocol.RpcCall"), &call).unwrap();
        assert_eq!(
            bytes,
            [
                0x08, 0x02, 0xa2, 0x02, 0x0a, 0x08, 0x07, 0x12, 0x06, b'a', b'c', b'c', b'e', b's',
                b's'
            ]
        );
        assert_eq!(frame(&bytes)[..4], [15, 0, 0, 0]);
    }
}
