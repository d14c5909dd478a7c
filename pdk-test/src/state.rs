//! The in-memory request: what Kong knows about it and how the PDK changes it.

use super::{
    http, lua,
    outcome::Handler,
    outcome::{
        ClientResponse, Exit, Failure, FailureKind, LogLevel, LogLine, Outcome, PdkCall, Source,
        UpstreamRequest,
    },
    request::{Subsystem, TestRequest, PLUGIN_ID},
};
use kong_rust_pdk::pdk::Headers;
use kong_rust_pdk::{
    abi::{Phase, KONG_500_MESSAGE},
    Error, ErrorKind,
};
use rmpv::Value;
use serde_json::Value as Json;
use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

pub(crate) struct State {
    pub(crate) req: TestRequest,
    /// The plugin whose handler runs (or ran last), and its id (`kong.plugin.get_id`).
    pub(crate) plugin: &'static str,
    pub(crate) plugin_id: String,
    pub(crate) phase: Phase,
    /// Set when the current event is over: every later call in the phase fails with it.
    pub(crate) ended: Option<String>,
    /// The client has its response: the phases before the log phase stop.
    pub(crate) answered: bool,
    pub(crate) started_at_ms: u64,
    /// `ngx.req`: read by `kong.request.*`, changed by `kong.service.request.*`.
    pub(crate) method: String,
    pub(crate) headers: Headers,
    pub(crate) query: String,
    pub(crate) body: Vec<u8>,
    pub(crate) upstream: Upstream,
    pub(crate) service_response: ClientResponse,
    pub(crate) response: ClientResponse,
    /// Response header changes made before the service answered, merged with its headers.
    pub(crate) pending: Vec<HeaderOp>,
    pub(crate) sent: Option<UpstreamRequest>,
    pub(crate) consumer: Option<Value>,
    pub(crate) credential: Option<Value>,
    pub(crate) route: Option<Value>,
    pub(crate) service: Option<Value>,
    pub(crate) known_consumers: Vec<Value>,
    pub(crate) ctx_shared: BTreeMap<String, Value>,
    pub(crate) nginx_ctx: BTreeMap<String, Value>,
    pub(crate) serialize_values: Vec<SerializeValue>,
    /// The log phase's snapshot of `kong.log.serialize()`.
    pub(crate) serialized: Option<Result<String, String>>,
    pub(crate) exit: Option<Exit>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) calls: Vec<PdkCall>,
    pub(crate) failures: Vec<Failure>,
    pub(crate) handlers: Vec<Handler>,
}

/// How the request to the service is shaped (`kong.service.*`, `kong.service.request.*`).
pub(crate) struct Upstream {
    pub(crate) scheme: String,
    pub(crate) path: String,
    /// `ngx.var.upstream_host`, once a plugin set the `host` header.
    pub(crate) host_header: Option<String>,
    pub(crate) target: Option<(String, u16)>,
    pub(crate) upstream: Option<String>,
    pub(crate) retries: i64,
    pub(crate) timeouts: [i64; 3],
    pub(crate) tls_verify: Option<bool>,
    pub(crate) tls_verify_depth: Option<i64>,
    pub(crate) buffered: bool,
}

/// A `kong.log.set_serialize_value`.
pub(crate) struct SerializeValue {
    pub(crate) key: String,
    pub(crate) value: Value,
    pub(crate) mode: SerializeMode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SerializeMode {
    Set,
    Add,
    Replace,
}

/// One change to the response headers.
#[derive(Clone)]
pub(crate) enum HeaderOp {
    Set(String, Vec<String>),
    Add(String, Vec<String>),
    Clear(String),
}

impl HeaderOp {
    fn apply(&self, headers: &mut Headers) {
        match self {
            HeaderOp::Set(name, values) => http::set_header(headers, name, values.clone()),
            HeaderOp::Add(name, values) => http::add_header(headers, name, values.clone()),
            HeaderOp::Clear(name) => http::clear_header(headers, name),
        }
    }
}

fn headers_from(lines: &[(String, String)]) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in lines {
        http::add_header(&mut headers, name, vec![value.clone()]);
    }
    headers
}

/// Adds `content-length` for a non-empty body that came without one.
fn with_length(mut headers: Headers, body: &[u8]) -> Headers {
    let framed = ["content-length", "transfer-encoding"]
        .iter()
        .any(|name| http::header_values(&headers, name).is_some());
    if !body.is_empty() && !framed {
        http::set_header(&mut headers, "content-length", vec![body.len().to_string()]);
    }
    headers
}

impl State {
    pub(crate) fn new(req: TestRequest) -> State {
        let mut headers = headers_from(&req.headers);
        if req.subsystem == Subsystem::Http && http::header_values(&headers, "host").is_none() {
            let default_port = if req.is_tls() { 443 } else { 80 };
            let host = match req.server_port() {
                port if port == default_port => req.host.clone(),
                port => format!("{}:{port}", req.host),
            };
            http::set_header(&mut headers, "host", vec![host]);
        }
        let headers = with_length(headers, &req.body);
        let route = req.route.as_ref().map(lua::from_json);
        let service = req.service.as_ref().map(lua::from_json);
        let upstream = Upstream {
            scheme: json_text(&req.service, "protocol").unwrap_or_else(|| "http".into()),
            path: upstream_path(&req),
            host_header: None,
            target: None,
            upstream: None,
            retries: json_int(&req.service, "retries").unwrap_or(5),
            timeouts: ["connect_timeout", "write_timeout", "read_timeout"]
                .map(|field| json_int(&req.service, field).unwrap_or(60_000)),
            tls_verify: None,
            tls_verify_depth: None,
            buffered: false,
        };
        let upstream_response = &req.upstream_response;
        let service_response = ClientResponse {
            status: upstream_response.status,
            headers: with_length(
                headers_from(&upstream_response.headers),
                &upstream_response.body,
            ),
            body: upstream_response.body.clone(),
            source: Source::Service,
        };
        let started_at_ms = req.started_at_ms.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
        State {
            plugin: "",
            plugin_id: PLUGIN_ID.to_string(),
            phase: Phase::Certificate,
            ended: None,
            answered: false,
            started_at_ms,
            method: req.method.clone(),
            headers,
            query: req.query.clone().unwrap_or_default(),
            body: req.body.clone(),
            upstream,
            service_response,
            response: ClientResponse {
                status: 200,
                headers: Headers::new(),
                body: Vec::new(),
                source: Source::Service,
            },
            pending: Vec::new(),
            sent: None,
            consumer: req.consumer.as_ref().map(lua::from_json),
            credential: req.credential.as_ref().map(lua::from_json),
            route,
            service,
            known_consumers: req.known_consumers.iter().map(lua::from_json).collect(),
            ctx_shared: json_entries(&req.ctx_shared),
            nginx_ctx: json_entries(&req.nginx_ctx),
            serialize_values: Vec::new(),
            serialized: None,
            exit: None,
            logs: Vec::new(),
            calls: Vec::new(),
            failures: Vec::new(),
            handlers: Vec::new(),
            req,
        }
    }

    pub(crate) fn is_stream(&self) -> bool {
        self.req.subsystem == Subsystem::Stream
    }

    pub(crate) fn proxied(&self) -> bool {
        self.sent.is_some()
    }

    /// A new event: `plugin`'s handler for `phase` starts.
    pub(crate) fn begin(&mut self, plugin: &'static str, plugin_id: &str, phase: Phase) {
        self.plugin = plugin;
        plugin_id.clone_into(&mut self.plugin_id);
        self.phase = phase;
        self.ended = None;
        self.handlers.push(Handler { plugin, phase });
    }

    /// The handler of the current phase returned `result` (`Err(message)` for a panic).
    pub(crate) fn finish(&mut self, result: Result<kong_rust_pdk::Result<()>, String>) {
        let (kind, message) = match result {
            Ok(Ok(())) => return,
            // With its causes, as the host logs it.
            Ok(Err(error)) => (FailureKind::Returned(error.kind()), format!("{error:#}")),
            Err(panic) => (FailureKind::Panicked, panic),
        };
        self.failures.push(Failure {
            plugin: self.plugin,
            phase: self.phase,
            kind,
            message,
        });
        // What kong-rust-host does for a failed handler whose event is still open: it answers
        // Kong with kong.response.exit(500, {message = ...}) where the phase can still answer.
        if self.ended.is_none() && self.phase.can_answer_client() {
            self.respond(500, unexpected_body(), Vec::new(), Source::Exit);
            self.exit = Some(Exit {
                plugin: self.plugin,
                phase: self.phase,
                method: "kong.response.exit".into(),
                status: 500,
                by_plugin: false,
            });
        }
    }

    /// Kong raised a Lua error while running `method`: the event dies, and Kong answers 500 where
    /// the phase still can.
    pub(crate) fn raised(&mut self, method: &str, message: String) -> Error {
        let message = format!("{method}: {message}");
        self.ended = Some(format!(
            "Kong raised an error in {method} and abandoned the event"
        ));
        self.failures.push(Failure {
            plugin: self.plugin,
            phase: self.phase,
            kind: FailureKind::Kong,
            message: message.clone(),
        });
        if self.phase.can_answer_client() {
            self.respond(500, unexpected_body(), Vec::new(), Source::Error);
        }
        Error::new(ErrorKind::Kong, message)
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogLine {
            plugin: self.plugin,
            phase: self.phase,
            level,
            message,
        });
    }

    /// A change to the client response's headers; before the service answered, it is also
    /// kept to be merged with the service's headers.
    pub(crate) fn change_response_header(&mut self, op: HeaderOp) {
        op.apply(&mut self.response.headers);
        if !self.proxied() {
            self.pending.push(op);
        }
    }

    /// Kong's `send`: the client gets `status`, `body` and the headers set so far plus
    /// `headers`; `Content-Type` for a JSON body and `Content-Length` unless given.
    pub(crate) fn respond(
        &mut self,
        status: u16,
        body: Body,
        headers: Vec<(String, Vec<String>)>,
        source: Source,
    ) {
        let given = |name: &str| headers.iter().any(|(n, _)| http::same_name(n, name));
        let (has_type, has_length) = (given("content-type"), given("content-length"));
        for (name, values) in headers {
            if name.eq_ignore_ascii_case("transfer-encoding") {
                self.log(
                    LogLevel::Warn,
                    "manually setting Transfer-Encoding. Ignored.".into(),
                );
            } else {
                self.change_response_header(HeaderOp::Set(name, values));
            }
        }
        let (bytes, json) = match body {
            Body::Raw(bytes) => (bytes, false),
            Body::Json(text) => (text.into_bytes(), true),
        };
        if json && !has_type {
            self.change_response_header(HeaderOp::Set(
                "content-type".into(),
                vec!["application/json; charset=utf-8".into()],
            ));
        }
        if !has_length {
            self.change_response_header(HeaderOp::Set(
                "content-length".into(),
                vec![bytes.len().to_string()],
            ));
        }
        self.response.status = status;
        self.response.body = bytes;
        self.response.source = source;
        self.answered = true;
    }

    /// The access phase is over: Kong sends the request upstream and the service's response
    /// becomes the client response, with the header changes made so far applied over it.
    pub(crate) fn proxy(&mut self) {
        let Some(service) = self.service.clone() else {
            let body = serde_json::json!({ "message": "no Service found with those values" });
            self.respond(503, Body::Json(body.to_string()), Vec::new(), Source::Error);
            return;
        };
        let service_host = lua_field(&service, "host").unwrap_or_else(|| "upstream.test".into());
        let service_port = lua_field(&service, "port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(80);
        let (host, port) = match (&self.upstream.target, &self.upstream.upstream) {
            (Some((host, port)), _) => (host.clone(), *port),
            (None, Some(name)) => (name.clone(), service_port),
            (None, None) => (service_host, service_port),
        };
        let mut headers = Headers::new();
        if !self.is_stream() {
            headers = self.headers.clone();
            let host_header = self.upstream.host_header.clone().unwrap_or_else(|| {
                let client_host = http::first_header(&self.headers, "host").map(str::to_string);
                match client_host.filter(|_| self.preserve_host()) {
                    Some(client_host) => client_host,
                    None if matches!(port, 80 | 443) => host.clone(),
                    None => format!("{host}:{port}"),
                }
            });
            http::set_header(&mut headers, "host", vec![host_header]);
            for (name, value) in self.forwarded_headers() {
                http::set_header(&mut headers, name, vec![value]);
            }
        }
        let [connect_timeout, write_timeout, read_timeout] = self.upstream.timeouts;
        self.sent = Some(UpstreamRequest {
            method: self.method.clone(),
            scheme: self.upstream.scheme.clone(),
            host,
            port,
            path: self.upstream.path.clone(),
            query: self.query.clone(),
            headers,
            body: self.body.clone(),
            upstream: self.upstream.upstream.clone(),
            retries: self.upstream.retries,
            connect_timeout,
            write_timeout,
            read_timeout,
            tls_verify: self.upstream.tls_verify,
            tls_verify_depth: self.upstream.tls_verify_depth,
            buffered: self.upstream.buffered,
        });
        self.response = self.service_response.clone();
        self.response.headers = self.merge_service_headers();
    }

    /// The client's headers once the service answered, from the changes plugins made before
    /// and the service's headers. Unbuffered, nginx sends the headers set before proxying and
    /// then the service's: a name in both goes out twice, the plugin's value first, except
    /// `Content-Type` and `Content-Length`, of which nginx keeps the service's; a header cleared
    /// before proxying is not removed from the service's. Buffered, Kong sets the service's
    /// headers over those (`kong.response.set_headers` in `Kong.response`), so the service's
    /// value wins for a name in both. (Unbuffered: measured with nginx and its lua module; Kong
    /// runs no `header_filter` for external plugins, so adds nothing to it.)
    fn merge_service_headers(&mut self) -> Headers {
        let mut headers = Headers::new();
        for op in std::mem::take(&mut self.pending) {
            op.apply(&mut headers);
        }
        for (name, values) in self.service_response.headers.iter() {
            let replaces = self.upstream.buffered
                || ["content-type", "content-length"]
                    .iter()
                    .any(|single| http::same_name(name, single));
            if replaces {
                http::set_header(&mut headers, name, values.to_vec());
            } else {
                http::add_header(&mut headers, name, values.to_vec());
            }
        }
        headers
    }

    /// The response phase needs the whole response: Kong proxies buffered.
    pub(crate) fn buffer(&mut self) {
        self.upstream.buffered = true;
    }

    fn preserve_host(&self) -> bool {
        matches!(
            lua_value(self.route.as_ref(), "preserve_host"),
            Some(Value::Boolean(true))
        )
    }

    /// The `X-Forwarded-*` and `X-Real-IP` headers of Kong's nginx template.
    fn forwarded_headers(&self) -> Vec<(&'static str, String)> {
        let client_ip = &self.req.client_ip;
        let forwarded_for = match http::first_header(&self.headers, "x-forwarded-for") {
            Some(existing) if self.is_trusted(client_ip) => format!("{existing}, {client_ip}"),
            _ => client_ip.clone(),
        };
        let mut headers = vec![
            ("x-forwarded-for", forwarded_for),
            ("x-forwarded-proto", self.forwarded_scheme()),
            ("x-forwarded-host", self.forwarded_host()),
            ("x-forwarded-port", self.forwarded_port().to_string()),
            ("x-forwarded-path", self.forwarded_path()),
            ("x-real-ip", self.forwarded_ip()),
        ];
        if let Some(prefix) = &self.req.forwarded.prefix {
            headers.push(("x-forwarded-prefix", prefix.clone()));
        }
        headers
    }

    pub(crate) fn forwarded_ip(&self) -> String {
        let forwarded = &self.req.forwarded;
        forwarded
            .ip
            .clone()
            .unwrap_or_else(|| self.req.client_ip.clone())
    }

    pub(crate) fn forwarded_port(&self) -> u16 {
        self.req.forwarded.port.unwrap_or(self.req.server_port())
    }

    pub(crate) fn forwarded_scheme(&self) -> String {
        let forwarded = &self.req.forwarded;
        forwarded
            .scheme
            .clone()
            .unwrap_or_else(|| self.req.scheme.clone())
    }

    pub(crate) fn forwarded_host(&self) -> String {
        let forwarded = &self.req.forwarded;
        forwarded
            .host
            .clone()
            .unwrap_or_else(|| self.req.host.clone())
    }

    pub(crate) fn forwarded_path(&self) -> String {
        let forwarded = &self.req.forwarded;
        forwarded
            .path
            .clone()
            .unwrap_or_else(|| self.req.path.clone())
    }

    /// `kong.ip.is_trusted`: `address` is in one of the `trusted_ips` ranges.
    pub(crate) fn is_trusted(&self, address: &str) -> bool {
        let Ok(address) = address.parse::<std::net::IpAddr>() else {
            return false;
        };
        self.req
            .trusted_ips
            .iter()
            .any(|range| in_range(address, range))
    }

    /// `ngx.var.upstream_uri`: the upstream path and query.
    pub(crate) fn upstream_uri(&self) -> String {
        match self.query.as_str() {
            "" => self.upstream.path.clone(),
            query => format!("{}?{query}", self.upstream.path),
        }
    }

    /// The log phase's snapshot (protocol.md §10.3): what `kong.log.serialize()` will return.
    pub(crate) fn snapshot(&mut self) {
        self.serialized = Some(super::serialize::serialize(self).map(|json| json.to_string()));
    }

    pub(crate) fn into_outcome(self) -> Outcome {
        let mut phases: Vec<Phase> = self.handlers.iter().map(|handler| handler.phase).collect();
        phases.dedup();
        Outcome {
            phases,
            handlers: self.handlers,
            upstream_request: self.sent,
            response: self.response,
            exit: self.exit,
            logs: self.logs,
            ctx_shared: self.ctx_shared,
            consumer: self.consumer,
            credential: self.credential,
            serialized: self
                .serialized
                .and_then(Result::ok)
                .and_then(|text| serde_json::from_str(&text).ok()),
            calls: self.calls,
            failures: self.failures,
        }
    }
}

/// A response body: raw bytes, or JSON text (which gets a JSON `Content-Type`).
pub(crate) enum Body {
    Raw(Vec<u8>),
    Json(String),
}

fn unexpected_body() -> Body {
    Body::Json(serde_json::json!({ "message": KONG_500_MESSAGE }).to_string())
}

fn json_text(entity: &Option<Json>, field: &str) -> Option<String> {
    entity.as_ref()?.get(field)?.as_str().map(str::to_string)
}

fn json_int(entity: &Option<Json>, field: &str) -> Option<i64> {
    entity.as_ref()?.get(field)?.as_i64()
}

fn json_entries(entries: &[(String, Json)]) -> BTreeMap<String, Value> {
    entries
        .iter()
        .map(|(key, value)| (key.clone(), lua::from_json(value)))
        .collect()
}

/// A field of an entity map (route, service, consumer).
pub(crate) fn lua_value<'a>(entity: Option<&'a Value>, field: &str) -> Option<&'a Value> {
    match entity? {
        Value::Map(entries) => entries
            .iter()
            .find(|(key, _)| key.as_str() == Some(field))
            .map(|(_, value)| value),
        _ => None,
    }
}

/// A scalar field of an entity, as text.
pub(crate) fn lua_field(entity: &Value, field: &str) -> Option<String> {
    let value = lua_value(Some(entity), field)?;
    lua::as_text(value).or_else(|| lua::as_number(value).map(|_| lua::tostring(value)))
}

/// Kong's upstream path for the default `v0` path handling: the matched route path stripped
/// (`strip_path`), appended to the service's path.
fn upstream_path(req: &TestRequest) -> String {
    let strip = req
        .route
        .as_ref()
        .and_then(|route| route.get("strip_path"))
        .and_then(Json::as_bool)
        .unwrap_or(true);
    let prefixes: Vec<&str> = req
        .route
        .as_ref()
        .and_then(|route| route.get("paths"))
        .and_then(Json::as_array)
        .map(|paths| paths.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let matched = prefixes
        .into_iter()
        .filter(|prefix| !prefix.starts_with('~') && req.path.starts_with(prefix))
        .max_by_key(|prefix| prefix.len());
    let rest = match matched {
        Some(prefix) if strip => &req.path[prefix.len()..],
        _ => req.path.as_str(),
    };
    let rest = rest.trim_start_matches('/');
    match json_text(&req.service, "path").as_deref() {
        None | Some("") | Some("/") => format!("/{rest}"),
        Some(base) if rest.is_empty() => base.to_string(),
        Some(base) => format!("{}/{rest}", base.trim_end_matches('/')),
    }
}

/// Whether `address` is `range` (an address, or `address/bits`).
fn in_range(address: std::net::IpAddr, range: &str) -> bool {
    use std::net::IpAddr;
    let (base, bits) = match range.split_once('/') {
        Some((base, bits)) => (base, bits.parse::<u32>().ok()),
        None => (range, None),
    };
    match (address, base.parse::<IpAddr>()) {
        (IpAddr::V4(a), Ok(IpAddr::V4(b))) => prefix_match(
            u32::from(a).into(),
            u32::from(b).into(),
            bits.unwrap_or(32),
            32,
        ),
        (IpAddr::V6(a), Ok(IpAddr::V6(b))) => {
            prefix_match(u128::from(a), u128::from(b), bits.unwrap_or(128), 128)
        }
        _ => false,
    }
}

fn prefix_match(a: u128, b: u128, bits: u32, width: u32) -> bool {
    match bits.min(width) {
        0 => true,
        bits => (a >> (width - bits)) == (b >> (width - bits)),
    }
}
