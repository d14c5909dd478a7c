//! Kong's RPC client: one per emulated nginx worker (protocol.md §5, §6.1, §7).
//!
//! Every call takes an idle connection from a keepalive pool (or connects a new
//! one), writes one request, reads until the matching response, and puts the
//! connection back. Concurrent calls therefore spread over several connections,
//! and the calls of one event may hop between connections, exactly the
//! situation a plugin server must cope with.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmpv::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::error::{Error, Result};
use crate::value::LuaValue;
use crate::wire::{
    encode_request, field, lua_bytes, lua_integer, lua_is_nil, lua_number, FrameDecoder,
    ServerMessage,
};

/// OpenResty keeps at most this many idle connections per pool (Kong's setting).
pub const MAX_IDLE: usize = 256;

/// Kong's read timeout for plugin server calls.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One RPC call as Kong would send it: a method and its single positional argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// E.g. `plugin.HandleEvent`.
    pub method: String,
    /// The one element of the params array.
    pub param: LuaValue,
}

impl Request {
    /// `plugin.StartInstance` with `{"Name", "Config"}`; `Config` is JSON *text*.
    pub fn start_instance(name: &str, config_json: &str) -> Self {
        Self::new(
            "plugin.StartInstance",
            LuaValue::map([("Name", name), ("Config", config_json)]),
        )
    }

    /// `plugin.CloseInstance` with the bare instance id (not a map).
    pub fn close_instance(id: i64) -> Self {
        Self::new("plugin.CloseInstance", LuaValue::int(id))
    }

    /// `plugin.HandleEvent` with `{"InstanceId", "EventName"}`.
    pub fn handle_event(instance_id: i64, event_name: &str) -> Self {
        Self::new(
            "plugin.HandleEvent",
            LuaValue::map([
                ("InstanceId", LuaValue::int(instance_id)),
                ("EventName", LuaValue::str(event_name)),
            ]),
        )
    }

    /// A step (`plugin.Step` or a typed variant): `{"EventId", "Data"}`, with the
    /// `Data` key absent when the PDK result was nil, as Kong sends it.
    pub fn step(step_method: &str, event_id: i64, data: Option<LuaValue>) -> Self {
        let mut entries = vec![(LuaValue::str("EventId"), LuaValue::int(event_id))];
        entries.extend(data.map(|d| (LuaValue::str("Data"), d)));
        Self::new(step_method, LuaValue::Map(entries))
    }

    /// Any other method.
    pub fn new(method: &str, param: LuaValue) -> Self {
        Request {
            method: method.to_owned(),
            param,
        }
    }

    /// The exact bytes Kong writes for this call with message id `msgid`.
    pub fn encode(&self, msgid: u64) -> Vec<u8> {
        encode_request(msgid, &self.method, &self.param)
    }
}

/// Result of `plugin.StartInstance`.
#[derive(Debug, Clone, PartialEq)]
pub struct StartReply {
    /// The instance id (`Id`), the only field Kong uses.
    pub id: i64,
    /// The whole result map as received.
    pub result: Value,
}

impl StartReply {
    /// Interprets a StartInstance result: a map whose `Id` must be an integer.
    pub fn from_result(result: Value) -> Result<Self> {
        let id = field(&result, "Id")
            .ok_or_else(|| Error::Protocol(format!("StartInstance result without Id: {result}")))?;
        let id = lua_integer(id)
            .ok_or_else(|| Error::Protocol(format!("StartInstance Id is not an integer: {id}")))?;
        Ok(StartReply { id, result })
    }
}

/// What the server wants next in an event.
#[derive(Debug, Clone, PartialEq)]
pub enum StepData {
    /// `"ret"`: the handler finished.
    Ret,
    /// A PDK call `{"Method", "Args"}`.
    Call {
        /// The dotted PDK name.
        method: String,
        /// The positional arguments Kong would pass: an array's elements (trailing
        /// nils dropped), a scalar as the single argument, a missing `Args` as none,
        /// and a map's entries 1..n (usually none), like Lua's `unpack`.
        args: Vec<Value>,
        /// The `Args` field exactly as received (`None` when absent or nil).
        raw_args: Option<Value>,
    },
}

/// Result of `plugin.HandleEvent` or a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReply {
    /// The `EventId` the next step must echo.
    pub event_id: i64,
    /// `"ret"` or the next PDK call.
    pub data: StepData,
}

impl StepReply {
    /// Interprets `{"EventId", "Data"}`. Where Kong raises a Lua error (no `Data`,
    /// `Data` neither `"ret"` nor a map with a string `Method`) this is a protocol
    /// error; a non-integer `EventId` is rejected as well.
    pub fn from_result(result: Value) -> Result<Self> {
        let event_id = field(&result, "EventId")
            .and_then(lua_integer)
            .ok_or_else(|| Error::Protocol(format!("no integer EventId in {result}")))?;
        let data = field(&result, "Data")
            .ok_or_else(|| Error::Protocol(format!("no Data in {result}")))?;
        if lua_bytes(data) == Some(b"ret") {
            return Ok(StepReply {
                event_id,
                data: StepData::Ret,
            });
        }
        let method = field(data, "Method")
            .and_then(lua_bytes)
            .ok_or_else(|| Error::Protocol(format!("Data is not \"ret\" or a PDK call: {data}")))?;
        let raw_args = field(data, "Args").cloned();
        Ok(StepReply {
            event_id,
            data: StepData::Call {
                method: String::from_utf8_lossy(method).into_owned(),
                args: spread_args(raw_args.as_ref()),
                raw_args,
            },
        })
    }
}

/// `unpack(Args)` as Kong does it: `#t` positional values of the decoded table.
fn spread_args(args: Option<&Value>) -> Vec<Value> {
    match args {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let len = items
                .iter()
                .rposition(|v| !lua_is_nil(v))
                .map_or(0, |i| i + 1);
            items[..len].to_vec()
        }
        Some(Value::Map(entries)) => {
            let at = |i: usize| {
                entries
                    .iter()
                    .rev()
                    .find(|(k, _)| lua_number(k) == Some(i as f64))
                    .map(|(_, v)| v)
                    .filter(|v| !lua_is_nil(v))
            };
            (1..).map_while(at).cloned().collect()
        }
        Some(scalar) => vec![scalar.clone()],
    }
}

/// Shared state of one emulated worker's RPC client.
#[derive(Debug)]
struct Inner {
    path: PathBuf,
    next_msgid: AtomicU64,
    read_timeout_ms: AtomicU64,
    opened: AtomicU64,
    idle: Mutex<VecDeque<UnixStream>>,
    server_pid: Mutex<Option<i64>>,
}

impl Inner {
    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms.load(Ordering::Relaxed))
    }

    async fn connect(self: &Arc<Self>) -> Result<Conn> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|source| Error::Connect {
                path: self.path.clone(),
                source,
            })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            stream,
            client: Arc::clone(self),
            reusable: true,
        })
    }

    /// Records a notification; only `serverPid` means anything to Kong.
    fn notify(&self, label: &Value, args: &Value) {
        if lua_bytes(label) != Some(b"serverPid") {
            return;
        }
        let pid = lua_integer(args).or_else(|| {
            lua_bytes(args)
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.trim().parse().ok())
        });
        if let Some(pid) = pid {
            *self
                .server_pid
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(pid);
        }
    }
}

/// Kong's side of the protocol for one nginx worker. Cheap to clone; clones share
/// the msgid counter, the keepalive pool and the statistics.
#[derive(Debug, Clone)]
pub struct KongClient {
    inner: Arc<Inner>,
}

impl KongClient {
    /// A client for the server socket at `path`. Nothing is connected yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        KongClient {
            inner: Arc::new(Inner {
                path: path.as_ref().to_path_buf(),
                next_msgid: AtomicU64::new(1),
                read_timeout_ms: AtomicU64::new(DEFAULT_READ_TIMEOUT.as_millis() as u64),
                opened: AtomicU64::new(0),
                idle: Mutex::new(VecDeque::new()),
                server_pid: Mutex::new(None),
            }),
        }
    }

    /// The server socket path.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// Sets how long any single read may wait (Kong: 60 s). Affects all clones.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.inner.read_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The current read timeout.
    pub fn read_timeout(&self) -> Duration {
        self.inner.read_timeout()
    }

    /// How many connections this client has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// How many connections sit idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.lock_idle().len()
    }

    /// The pid from the last `serverPid` notification seen on any connection.
    pub fn server_pid(&self) -> Option<i64> {
        *self
            .inner
            .server_pid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a fresh connection outside the pool, so a test can choose which
    /// connection each call uses. It shares this client's msgid counter.
    pub async fn connection(&self) -> Result<Conn> {
        self.inner.connect().await
    }

    /// Returns a connection to the keepalive pool (dropped if its last exchange
    /// did not complete cleanly). The least recently used one is closed when more
    /// than [`MAX_IDLE`] are idle, as OpenResty does.
    pub fn release(&self, conn: Conn) {
        if !conn.reusable || !Arc::ptr_eq(&conn.client, &self.inner) {
            return;
        }
        let mut idle = self.lock_idle();
        idle.push_front(conn.stream);
        idle.truncate(MAX_IDLE);
    }

    /// Sends one call through a pooled connection and returns its result.
    pub async fn request(&self, req: &Request) -> Result<Value> {
        // Kong bumps its counter even when the call then fails to connect.
        let msgid = self.inner.next_msgid.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.checkout().await?;
        let res = conn.exchange(msgid, req).await;
        self.release(conn);
        res
    }

    /// A generic call, e.g. `plugin.GetStatus`.
    pub async fn call(&self, method: &str, param: LuaValue) -> Result<Value> {
        self.request(&Request::new(method, param)).await
    }

    /// `plugin.StartInstance`.
    pub async fn start_instance(&self, name: &str, config_json: &str) -> Result<StartReply> {
        StartReply::from_result(
            self.request(&Request::start_instance(name, config_json))
                .await?,
        )
    }

    /// `plugin.CloseInstance`; the result is returned although Kong ignores it.
    pub async fn close_instance(&self, id: i64) -> Result<Value> {
        self.request(&Request::close_instance(id)).await
    }

    /// `plugin.HandleEvent`.
    pub async fn handle_event(&self, instance_id: i64, event_name: &str) -> Result<StepReply> {
        StepReply::from_result(
            self.request(&Request::handle_event(instance_id, event_name))
                .await?,
        )
    }

    /// A step; `data: None` sends the map without a `Data` key.
    pub async fn step(
        &self,
        step_method: &str,
        event_id: i64,
        data: Option<LuaValue>,
    ) -> Result<StepReply> {
        StepReply::from_result(
            self.request(&Request::step(step_method, event_id, data))
                .await?,
        )
    }

    async fn checkout(&self) -> Result<Conn> {
        let pooled = self.lock_idle().pop_front();
        match pooled {
            Some(stream) => Ok(Conn {
                stream,
                client: Arc::clone(&self.inner),
                reusable: true,
            }),
            None => self.inner.connect().await,
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<UnixStream>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection to the server, used for exactly one outstanding call at a time.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    client: Arc<Inner>,
    reusable: bool,
}

impl Conn {
    /// Whether the last exchange completed cleanly (reply read, nothing stray
    /// buffered after it), i.e. whether Kong's pool would keep it.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends one call on this connection, taking the next msgid of the client.
    pub async fn request(&mut self, req: &Request) -> Result<Value> {
        let msgid = self.client.next_msgid.fetch_add(1, Ordering::Relaxed);
        self.exchange(msgid, req).await
    }

    /// A generic call on this connection.
    pub async fn call(&mut self, method: &str, param: LuaValue) -> Result<Value> {
        self.request(&Request::new(method, param)).await
    }

    /// `plugin.StartInstance` on this connection.
    pub async fn start_instance(&mut self, name: &str, config_json: &str) -> Result<StartReply> {
        StartReply::from_result(
            self.request(&Request::start_instance(name, config_json))
                .await?,
        )
    }

    /// `plugin.CloseInstance` on this connection.
    pub async fn close_instance(&mut self, id: i64) -> Result<Value> {
        self.request(&Request::close_instance(id)).await
    }

    /// `plugin.HandleEvent` on this connection.
    pub async fn handle_event(&mut self, instance_id: i64, event_name: &str) -> Result<StepReply> {
        StepReply::from_result(
            self.request(&Request::handle_event(instance_id, event_name))
                .await?,
        )
    }

    /// A step on this connection.
    pub async fn step(
        &mut self,
        step_method: &str,
        event_id: i64,
        data: Option<LuaValue>,
    ) -> Result<StepReply> {
        StepReply::from_result(
            self.request(&Request::step(step_method, event_id, data))
                .await?,
        )
    }

    /// One write of the request, then reads until the matching response,
    /// recording notifications on the way. A fresh decoder per call, like Kong.
    async fn exchange(&mut self, msgid: u64, req: &Request) -> Result<Value> {
        self.reusable = false;
        self.stream.write_all(&req.encode(msgid)).await?;
        let timeout = self.client.read_timeout();
        let mut decoder = FrameDecoder::new();
        loop {
            let (_, msg) = decoder.read_frame(&mut self.stream, timeout).await?;
            match ServerMessage::parse(msg)? {
                ServerMessage::Notification { label, args } => self.client.notify(&label, &args),
                ServerMessage::Response {
                    msgid: got,
                    error,
                    result,
                } => {
                    if lua_number(&got) != Some(msgid as f64) {
                        return Err(Error::Protocol(format!(
                            "unexpected RPC response ID from plugin server: sent {msgid}, got {got}"
                        )));
                    }
                    self.reusable = decoder.is_empty();
                    if lua_is_nil(&error) {
                        return Ok(result);
                    }
                    let message = lua_bytes(&error).ok_or_else(|| {
                        Error::Protocol(format!("RPC error is not a string: {error}"))
                    })?;
                    return Err(Error::Server(String::from_utf8_lossy(message).into_owned()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{hex, socket_path};
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// Reads one request off `s` and returns its msgid and raw bytes.
    async fn read_request(s: &mut UnixStream) -> Option<(u64, Vec<u8>)> {
        let mut d = FrameDecoder::new();
        let (raw, v) = d.read_frame(s, Duration::from_secs(5)).await.ok()?;
        Some((v[1].as_u64()?, raw))
    }

    fn reply(msgid: u64, error: LuaValue, result: LuaValue) -> Vec<u8> {
        LuaValue::Array(vec![
            LuaValue::int(1),
            LuaValue::Num(msgid as f64),
            error,
            result,
        ])
        .to_bytes()
    }

    /// Serves every connection: each request gets `answer(msgid)` after `delay`.
    fn serve(
        path: &Path,
        delay: Duration,
        answer: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static,
    ) {
        let listener = UnixListener::bind(path).unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    while let Some((msgid, _)) = read_request(&mut s).await {
                        tokio::time::sleep(delay).await;
                        if s.write_all(&answer(msgid)).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn request_bytes_match_spec() {
        assert_eq!(
            Request::close_instance(7).encode(12),
            hex(r#"94 00 0c b4 "plugin.CloseInstance" 91 07"#)
        );
    }

    #[tokio::test]
    async fn reply_split_byte_by_byte_after_server_pid() {
        let path = socket_path("split");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (msgid, raw) = read_request(&mut s).await.unwrap();
            assert_eq!(msgid, 1);
            let mut out = hex(r#"93 02 a9 "serverPid" cd 30 39"#);
            // protocol.md §15.1's StartInstance reply plus a multi-MB field.
            let mut result =
                hex(r#"84 a2 "Id" 07 a4 "Name" aa "rust-hello" a9 "StartTime" ce 66 66 99 80"#);
            result.extend(hex(r#"a6 "Config""#));
            LuaValue::str(vec![b'c'; 3 << 20]).encode(&mut result);
            out.extend(hex("94 01 01 c0"));
            out.extend(result);
            for b in &out[..200] {
                s.write_all(&[*b]).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            s.write_all(&out[200..]).await.unwrap();
            raw
        });
        let client = KongClient::new(&path);
        let reply = client
            .start_instance("rust-hello", r#"{"message":"hi"}"#)
            .await
            .unwrap();
        assert_eq!(reply.id, 7);
        assert_eq!(
            field(&reply.result, "Config")
                .and_then(lua_bytes)
                .map(<[u8]>::len),
            Some(3 << 20)
        );
        assert_eq!(client.server_pid(), Some(12345));
        let raw = server.await.unwrap();
        assert_eq!(
            raw,
            Request::start_instance("rust-hello", r#"{"message":"hi"}"#).encode(1)
        );
        assert_eq!(client.idle_connections(), 1);
    }

    #[tokio::test]
    async fn pool_reuses_sequentially_and_spreads_concurrently() {
        let path = socket_path("pool");
        serve(&path, Duration::from_millis(50), |id| {
            reply(id, LuaValue::Nil, LuaValue::str("ok"))
        });
        let client = KongClient::new(&path);
        for _ in 0..3 {
            client
                .call("plugin.GetStatus", LuaValue::Nil)
                .await
                .unwrap();
        }
        assert_eq!(client.connections_opened(), 1);
        let (a, b, c) = tokio::join!(
            client.call("x", LuaValue::Nil),
            client.call("x", LuaValue::Nil),
            client.call("x", LuaValue::Nil)
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(client.connections_opened(), 3);
        assert_eq!(client.idle_connections(), 3);
    }

    #[tokio::test]
    async fn server_error_string_keeps_connection() {
        let path = socket_path("srverr");
        serve(&path, Duration::ZERO, |id| {
            reply(id, LuaValue::str("no plugin instance 7"), LuaValue::Nil)
        });
        let client = KongClient::new(&path);
        let err = client.handle_event(7, "access").await.unwrap_err();
        assert_eq!(err.server_message(), Some("no plugin instance 7"));
        assert!(err.is_no_plugin_instance());
        assert_eq!(client.idle_connections(), 1);
    }

    #[tokio::test]
    async fn rejects_wrong_msgid_and_message_type() {
        let path = socket_path("badid");
        serve(&path, Duration::ZERO, |id| {
            if id == 1 {
                reply(id + 1, LuaValue::Nil, LuaValue::Nil)
            } else {
                hex("93 03 00 00")
            }
        });
        let client = KongClient::new(&path);
        let err = client.close_instance(1).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(ref m) if m.contains("unexpected RPC response ID")));
        let err = client.close_instance(1).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert_eq!(client.idle_connections(), 0);
        assert_eq!(client.connections_opened(), 2);
    }

    #[tokio::test]
    async fn timeout_no_data_and_missing_bytes() {
        let path = socket_path("fail");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            // 1st: silent; 2nd: close after the request; 3rd: half a reply then close.
            let (mut silent, _) = listener.accept().await.unwrap();
            read_request(&mut silent).await;
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            read_request(&mut s).await;
            s.write_all(&hex("94 01")).await.unwrap();
            drop(s);
            let mut sink = Vec::new();
            let _ = silent.read_to_end(&mut sink).await;
        });
        let client = KongClient::new(&path);
        client.set_read_timeout(Duration::from_millis(100));
        let err = client.call("a", LuaValue::Nil).await.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        let err = client.call("b", LuaValue::Nil).await.unwrap_err();
        assert!(matches!(err, Error::NoData), "{err}");
        let err = client.call("c", LuaValue::Nil).await.unwrap_err();
        assert!(matches!(err, Error::MissingBytes), "{err}");
        assert_eq!(client.idle_connections(), 0);
    }

    #[test]
    fn step_reply_shapes() {
        let parse = |bytes: &str| {
            let v = rmpv::decode::read_value(&mut hex(bytes).as_slice()).unwrap();
            StepReply::from_result(v)
        };
        let r = parse(r#"82 a7 "EventId" 05 a4 "Data" a3 "ret""#).unwrap();
        assert_eq!((r.event_id, r.data), (5, StepData::Ret));
        let r = parse(r#"82 a7 "EventId" 05 a4 "Data" 81 a6 "Method" a1 "m""#).unwrap();
        assert_eq!(
            r.data,
            StepData::Call {
                method: "m".into(),
                args: vec![],
                raw_args: None
            }
        );
        let r =
            parse(r#"82 a7 "EventId" 05 a4 "Data" 82 a6 "Method" a1 "m" a4 "Args" 2a"#).unwrap();
        assert!(
            matches!(r.data, StepData::Call { ref args, .. } if *args == vec![Value::from(42)])
        );
        let r =
            parse(r#"82 a7 "EventId" 05 a4 "Data" 82 a6 "Method" a1 "m" a4 "Args" 93 01 c0 c0"#)
                .unwrap();
        assert!(matches!(r.data, StepData::Call { ref args, .. } if *args == vec![Value::from(1)]));
        let r =
            parse(r#"82 a7 "EventId" 05 a4 "Data" 82 a6 "Method" a1 "m" a4 "Args" 81 a1 "k" 01"#)
                .unwrap();
        assert!(
            matches!(r.data, StepData::Call { ref args, ref raw_args, .. }
            if args.is_empty() && raw_args.is_some())
        );
        assert!(parse(r#"81 a7 "EventId" 05"#).is_err());
        assert!(parse(r#"82 a7 "EventId" 05 a4 "Data" a3 "foo""#).is_err());
        assert!(parse(r#"82 a7 "EventId" 05 a4 "Data" 81 a6 "Method" 01"#).is_err());
    }
}
