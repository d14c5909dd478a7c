//! What a run produced, for tests to assert on.

use super::http;
use kong_rust_pdk::pdk::Headers;
pub use kong_rust_pdk::pdk::Source;
use kong_rust_pdk::{abi::Phase, Error, ErrorKind};
use rmpv::Value;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Everything observable about one request run through the plugin (or the chain).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The phases in which a handler ran, in order.
    pub phases: Vec<Phase>,
    /// Every handler that ran, in order: for a [`PluginChain`](crate::PluginChain), Kong's order
    /// (phase by phase, by priority within a phase).
    pub handlers: Vec<Handler>,
    /// The request Kong sent to the service; `None` when it never got that far (an exit, an
    /// error, a route without a service).
    pub upstream_request: Option<UpstreamRequest>,
    /// What the client received.
    pub response: ClientResponse,
    /// The `kong.response.exit`/`error` that ended the request, if one did.
    pub exit: Option<Exit>,
    /// Every `kong.log.*` line, in order.
    pub logs: Vec<LogLine>,
    /// `kong.ctx.shared` at the end of the request.
    pub ctx_shared: BTreeMap<String, Value>,
    /// The authenticated consumer at the end of the request.
    pub consumer: Option<Value>,
    /// The authenticated credential at the end of the request.
    pub credential: Option<Value>,
    /// What `kong.log.serialize()` returns in the log phase; `None` if Kong would raise.
    pub serialized: Option<serde_json::Value>,
    /// Every PDK call the plugin made, in order.
    pub calls: Vec<PdkCall>,
    /// Handler errors and panics, and the errors Kong raised for PDK calls.
    pub failures: Vec<Failure>,
}

impl Outcome {
    /// The messages logged at `level`.
    pub fn logs_at(&self, level: LogLevel) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|line| line.level == level)
            .map(|line| line.message.as_str())
            .collect()
    }

    /// The `kong.ctx.shared` value under `key`, deserialized; `None` when absent or of another
    /// shape.
    pub fn shared<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        rmpv::ext::from_value(self.ctx_shared.get(key)?.clone()).ok()
    }

    /// The calls made to `method`.
    pub fn calls_to(&self, method: &str) -> Vec<&PdkCall> {
        self.calls.iter().filter(|c| c.method == method).collect()
    }

    /// Whether a handler ran in `phase`.
    pub fn ran(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    /// Whether plugin `name`'s handler for `phase` ran.
    pub fn ran_plugin(&self, name: &str, phase: Phase) -> bool {
        self.handlers
            .iter()
            .any(|handler| handler.plugin == name && handler.phase == phase)
    }

    /// The failures of `phase`.
    pub fn failures_in(&self, phase: Phase) -> Vec<&Failure> {
        self.failures.iter().filter(|f| f.phase == phase).collect()
    }
}

/// The response the client receives.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResponse {
    /// The HTTP status.
    pub status: u16,
    /// Names in the case given (by the plugin, the service or Kong).
    pub headers: Headers,
    /// The body as sent.
    pub body: Vec<u8>,
    /// Who produced it: the service, the plugin's exit, or Kong on an error.
    pub source: Source,
}

/// The request Kong sends to the service.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// The HTTP method (`GET`, …).
    pub method: String,
    /// `http`/`https` (`tcp`/`tls`/`udp` for a stream).
    pub scheme: String,
    /// Where Kong connects: the `set_target` host, else the `set_upstream` name, else the
    /// service's host.
    pub host: String,
    /// The port Kong connects to.
    pub port: u16,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Names in the case given (by the client or the plugin), including `host` and Kong's
    /// `x-forwarded-*`/`x-real-ip`.
    pub headers: Headers,
    /// The body Kong sends.
    pub body: Vec<u8>,
    /// The upstream entity chosen with `kong.service.set_upstream`.
    pub upstream: Option<String>,
    /// `kong.service.set_retries`, else the service's.
    pub retries: i64,
    /// Milliseconds: `kong.service.set_timeouts`, else the service's.
    pub connect_timeout: i64,
    /// Milliseconds: `kong.service.set_timeouts`, else the service's.
    pub write_timeout: i64,
    /// Milliseconds: `kong.service.set_timeouts`, else the service's.
    pub read_timeout: i64,
    /// Set by `kong.service.set_tls_verify`.
    pub tls_verify: Option<bool>,
    /// Set by `kong.service.set_tls_verify_depth`.
    pub tls_verify_depth: Option<i64>,
    /// Whether the response is buffered (a `response` handler or `enable_buffering`).
    pub buffered: bool,
}

/// Shared helpers of the two HTTP messages.
macro_rules! message_helpers {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The first value of header `name` (case-insensitive).
            pub fn header(&self, name: &str) -> Option<&str> {
                http::first_header(&self.headers, name)
            }

            /// Every value of header `name` (case-insensitive).
            pub fn header_values(&self, name: &str) -> &[String] {
                http::header_values(&self.headers, name).unwrap_or_default()
            }

            /// The body as text (invalid UTF-8 replaced).
            pub fn text(&self) -> String {
                String::from_utf8_lossy(&self.body).into_owned()
            }

            /// The body parsed as JSON.
            pub fn json(&self) -> serde_json::Result<serde_json::Value> {
                serde_json::from_slice(&self.body)
            }
        }
    )*};
}

message_helpers!(ClientResponse, UpstreamRequest);

/// One handler run: plugin `plugin`'s handler for `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handler {
    /// The plugin's name.
    pub plugin: &'static str,
    /// The phase it ran.
    pub phase: Phase,
}

/// A `kong.response.exit`/`error` that ended the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The plugin whose handler it was.
    pub plugin: &'static str,
    /// The phase it was called in.
    pub phase: Phase,
    /// `kong.response.exit` or `kong.response.error`.
    pub method: String,
    /// The status the client gets.
    pub status: u16,
    /// `false` for the 500 the host sends when a handler fails.
    pub by_plugin: bool,
}

/// `kong.log` levels; `kong.log(...)` is `notice`, `kong.log.deprecation` is `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `kong.log.alert`.
    Alert,
    /// `kong.log.crit`.
    Crit,
    /// `kong.log.err`.
    Err,
    /// `kong.log.warn` and `kong.log.deprecation`.
    Warn,
    /// `kong.log.notice` and `kong.log(...)`.
    Notice,
    /// `kong.log.info`.
    Info,
    /// `kong.log.debug`.
    Debug,
}

/// One `kong.log.*` line: Kong's `tostring` of every argument, concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The plugin that logged it.
    pub plugin: &'static str,
    /// The phase it was logged in.
    pub phase: Phase,
    /// Its level.
    pub level: LogLevel,
    /// The arguments as Kong's `tostring` shows them, concatenated.
    pub message: String,
}

/// One PDK call: the arguments as the plugin sent them and what it got back.
#[derive(Debug, Clone)]
pub struct PdkCall {
    /// The plugin that made it.
    pub plugin: &'static str,
    /// The phase it was made in.
    pub phase: Phase,
    /// The PDK function, `kong.request.get_header`.
    pub method: String,
    /// The arguments as the plugin sent them.
    pub args: Vec<Value>,
    /// What the plugin got back: Kong's answer as Kong encodes it, or Kong's error.
    pub result: Result<Value, Error>,
}

/// A phase that went wrong.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The plugin whose handler failed.
    pub plugin: &'static str,
    /// The phase that failed.
    pub phase: Phase,
    /// How it failed.
    pub kind: FailureKind,
    /// The error's message, or the panic's.
    pub message: String,
}

/// How a phase went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler returned this error.
    Returned(ErrorKind),
    /// The handler panicked.
    Panicked,
    /// Kong raised a Lua error for a PDK call (wrong phase, bad arguments): the event died.
    Kong,
}
