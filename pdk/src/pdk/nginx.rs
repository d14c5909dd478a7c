use super::{ctx, value, Bridge};
use crate::Result;
use rmpv::Value;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// `kong.nginx`: the nginx request underneath Kong's.
#[derive(Clone, Copy)]
pub struct Nginx<'a> {
    bridge: Bridge<'a>,
}

/// Which nginx subsystem serves the request (`kong.nginx.get_subsystem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsystem {
    /// HTTP(S) and gRPC routes.
    Http,
    /// TCP, TLS and UDP routes.
    Stream,
}

/// nginx's connection and request counters (`kong.nginx.get_statistics`), for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Statistics {
    /// nginx's `connections_active` counter.
    pub connections_active: u64,
    /// nginx's `connections_reading` counter.
    pub connections_reading: u64,
    /// nginx's `connections_writing` counter.
    pub connections_writing: u64,
    /// nginx's `connections_waiting` counter.
    pub connections_waiting: u64,
    /// nginx's `connections_accepted` counter.
    pub connections_accepted: u64,
    /// nginx's `connections_handled` counter.
    pub connections_handled: u64,
    /// nginx's `total_requests` counter.
    pub total_requests: u64,
}

impl<'a> Nginx<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Nginx { bridge }
    }

    /// nginx variable `name` (`request_uri`, `http_<header>`, `cookie_<name>`, …) as text,
    /// `None` when it is not set. Phases: rewrite, access, response, preread (not log).
    pub fn get_var(&self, name: &str) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.nginx.get_var",
            vec![Value::from(name)],
            value::optional_string,
        )
    }

    /// The client connection's TLS version (`TLSv1.3`, …), `None` without TLS.
    /// Phases: certificate, rewrite, access, response.
    pub fn get_tls1_version_str(&self) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.nginx.get_tls1_version_str",
            vec![],
            value::optional_string,
        )
    }

    /// `ngx.ctx[key]`, Kong's own per-request values (`KONG_ACCESS_START`, …) included;
    /// `None` when unset. Every phase (the log phase reads a snapshot).
    pub fn get_ctx<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        ctx::get(self.bridge, "kong.nginx.get_ctx", key)
    }

    /// Sets `ngx.ctx[key]`; a value that serializes to nothing removes it. Every phase.
    pub fn set_ctx<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        ctx::set(self.bridge, "kong.nginx.set_ctx", key, value)
    }

    /// When nginx started reading the request: seconds since the epoch, millisecond precision.
    /// Phases: rewrite, access, response, log.
    pub fn req_start_time(&self) -> Result<f64> {
        self.bridge
            .call_as("kong.nginx.req_start_time", vec![], value::number)
    }

    /// `http` or `stream`. Every phase.
    pub fn get_subsystem(&self) -> Result<Subsystem> {
        self.bridge
            .call_as("kong.nginx.get_subsystem", vec![], value::decode)
    }

    /// nginx's connection and request counters. Every phase.
    pub fn get_statistics(&self) -> Result<Statistics> {
        self.bridge
            .call_as("kong.nginx.get_statistics", vec![], value::decode)
    }
}
