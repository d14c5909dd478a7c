//! The request a test sends through the plugin, and the service's answer to it.

use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

// Ids of the entities the harness makes up when a test does not provide its own.
/// The made-up route's id (`kong.router.get_route().id`).
pub const ROUTE_ID: &str = "1f3a0c4e-2b5d-4e6f-8a7b-9c0d1e2f3a4b";
/// The made-up service's id (`kong.router.get_service().id`).
pub const SERVICE_ID: &str = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";
/// The plugin instance's id (`kong.plugin.get_id()`).
pub const PLUGIN_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
/// The Kong node's id (`kong.node.get_id()`).
pub const NODE_ID: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
/// The workspace id Kong adds to every plugin config (`__ws_id`).
pub const WORKSPACE_ID: &str = "0dc6f45b-8f8d-40d2-a504-473544ee190b";
/// Kong's request id, as it appears in `kong.response.error` bodies.
pub const REQUEST_ID: &str = "5c1e3f7a9b2d4e6f8a0b1c2d3e4f5a6b";

/// Whether the request came through Kong's `http` or `stream` subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsystem {
    Http,
    Stream,
}

/// `header`, `body` and `json_body`: the same for a request and the service's response.
macro_rules! http_message_builders {
    () => {
        /// Adds a header line; the same name again (in any case) adds a value.
        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_string(), value.to_string()));
            self
        }

        /// The body (a `Content-Length` header is added when it is not empty).
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        /// A JSON body with `Content-Type: application/json`.
        pub fn json_body(self, body: &Json) -> Self {
            self.header("content-type", "application/json")
                .body(body.to_string())
        }
    };
}

/// A client request, built up with chained setters.
///
/// `TestRequest::get("/orders?id=7")` is a plain `GET http://example.com/orders?id=7` from
/// `127.0.0.1` matched by a route (`paths = ["/"]`) to a service at `http://upstream.test:80`;
/// the service answers `200` with an empty body unless [`TestRequest::upstream_response`] says
/// otherwise. Header names are case-insensitive and may repeat.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub(crate) subsystem: Subsystem,
    pub(crate) method: String,
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) http_version: f64,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) client_ip: String,
    pub(crate) client_port: u16,
    pub(crate) forwarded: Forwarded,
    pub(crate) consumer: Option<Json>,
    pub(crate) credential: Option<Json>,
    pub(crate) route: Option<Json>,
    pub(crate) service: Option<Json>,
    pub(crate) unnamed_captures: Vec<String>,
    pub(crate) named_captures: Vec<(String, String)>,
    pub(crate) upstream_response: UpstreamResponse,
    pub(crate) ctx_shared: Vec<(String, Json)>,
    pub(crate) nginx_vars: BTreeMap<String, String>,
    pub(crate) nginx_ctx: Vec<(String, Json)>,
    pub(crate) known_consumers: Vec<Json>,
    pub(crate) upstreams: Vec<String>,
    pub(crate) trusted_ips: Vec<String>,
    pub(crate) vault: BTreeMap<String, String>,
    pub(crate) started_at_ms: Option<u64>,
    pub(crate) latencies: (i64, i64, i64),
    pub(crate) tls_version: Option<String>,
    pub(crate) client_certificate: Option<String>,
}

/// What Kong computed from `X-Forwarded-*` (for a trusted client) or from the connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarded {
    pub(crate) ip: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) scheme: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) prefix: Option<String>,
}

impl TestRequest {
    /// A request with `method` for `target`: a path with an optional query (`/a?b=1`), or a
    /// whole URL (`https://api.example.com:8443/a?b=1`) that also sets scheme, host and port.
    pub fn new(method: &str, target: &str) -> Self {
        let mut request = TestRequest {
            subsystem: Subsystem::Http,
            method: method.to_string(),
            scheme: "http".into(),
            host: "example.com".into(),
            port: None,
            path: "/".into(),
            query: None,
            http_version: 1.1,
            headers: Vec::new(),
            body: Vec::new(),
            client_ip: "127.0.0.1".into(),
            client_port: 40000,
            forwarded: Forwarded::default(),
            consumer: None,
            credential: None,
            route: Some(default_route(&["http", "https"])),
            service: Some(default_service("http", 80)),
            unnamed_captures: Vec::new(),
            named_captures: Vec::new(),
            upstream_response: UpstreamResponse::default(),
            ctx_shared: Vec::new(),
            nginx_vars: BTreeMap::new(),
            nginx_ctx: Vec::new(),
            known_consumers: Vec::new(),
            upstreams: Vec::new(),
            trusted_ips: Vec::new(),
            vault: BTreeMap::new(),
            started_at_ms: None,
            latencies: (0, 0, 0),
            tls_version: None,
            client_certificate: None,
        };
        let rest = match target.split_once("://") {
            Some((scheme, rest)) => {
                request.scheme = scheme.to_ascii_lowercase();
                let (authority, rest) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                match authority
                    .rsplit_once(':')
                    .map(|(h, p)| (h, p.parse::<u16>()))
                {
                    Some((host, Ok(port))) => {
                        request.host = host.to_string();
                        request.port = Some(port);
                    }
                    _ => request.host = authority.to_string(),
                }
                if rest.is_empty() {
                    "/"
                } else {
                    rest
                }
            }
            None => target,
        };
        match rest.split_once('?') {
            Some((path, query)) => {
                request.path = path.to_string();
                request.query = Some(query.to_string());
            }
            None => request.path = rest.to_string(),
        }
        request
    }

    /// `GET target`.
    pub fn get(target: &str) -> Self {
        TestRequest::new("GET", target)
    }

    /// `POST target`.
    pub fn post(target: &str) -> Self {
        TestRequest::new("POST", target)
    }

    /// A connection on a stream route: `protocol` is `tcp`, `tls` or `udp`. Kong runs
    /// `certificate` (for `tls`), `preread` and `log` for it, and no HTTP PDK function works.
    pub fn stream(protocol: &str) -> Self {
        let mut request = TestRequest::new("", "/");
        request.subsystem = Subsystem::Stream;
        request.scheme = protocol.to_string();
        request.port = Some(9000);
        request.path = String::new();
        request.route = Some(default_route(&[protocol]));
        request.service = Some(default_service(protocol, 9000));
        request
    }

    /// The HTTP method (`GET`, `POST`, …).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_string();
        self
    }

    /// `http` or `https` (the default port follows unless [`TestRequest::port`] is set).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_string();
        self
    }

    /// The host the client asked for (also its `Host` header, unless one is set explicitly).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// The port Kong received the request on.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The raw path, as the client sent it.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_string();
        self
    }

    /// The raw query string, without `?`; replaces any query set before.
    pub fn query(mut self, raw: &str) -> Self {
        self.query = Some(raw.to_string());
        self
    }

    /// Appends `name=value` to the query (both URL-encoded); repeat for a multi-valued argument.
    pub fn query_arg(self, name: &str, value: &str) -> Self {
        let piece = format!(
            "{}={}",
            super::http::escape(name),
            super::http::escape(value)
        );
        self.append_query(piece)
    }

    /// Appends a flag (`?debug`, an argument without `=`).
    pub fn query_flag(self, name: &str) -> Self {
        let piece = super::http::escape(name);
        self.append_query(piece)
    }

    fn append_query(mut self, piece: String) -> Self {
        self.query = Some(match self.query.take().filter(|q| !q.is_empty()) {
            Some(query) => format!("{query}&{piece}"),
            None => piece,
        });
        self
    }

    /// `1.0`, `1.1` (the default) or `2.0`.
    pub fn http_version(mut self, version: f64) -> Self {
        self.http_version = version;
        self
    }

    http_message_builders!();

    /// The client's address (default `127.0.0.1`).
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.client_ip = ip.to_string();
        self
    }

    /// The client's port.
    pub fn client_port(mut self, port: u16) -> Self {
        self.client_port = port;
        self
    }

    /// What `kong.client.get_forwarded_ip` returns (by default the client ip).
    pub fn forwarded_ip(mut self, ip: &str) -> Self {
        self.forwarded.ip = Some(ip.to_string());
        self
    }

    /// What `kong.request.get_forwarded_port` returns (by default the port).
    pub fn forwarded_port(mut self, port: u16) -> Self {
        self.forwarded.port = Some(port);
        self
    }

    /// What `kong.request.get_forwarded_scheme` returns (by default the scheme).
    pub fn forwarded_scheme(mut self, scheme: &str) -> Self {
        self.forwarded.scheme = Some(scheme.to_string());
        self
    }

    /// What `kong.request.get_forwarded_host` returns (by default the host).
    pub fn forwarded_host(mut self, host: &str) -> Self {
        self.forwarded.host = Some(host.to_string());
        self
    }

    /// What `kong.request.get_forwarded_path` returns (by default the path).
    pub fn forwarded_path(mut self, path: &str) -> Self {
        self.forwarded.path = Some(path.to_string());
        self
    }

    /// What `kong.request.get_forwarded_prefix` returns (by default nothing).
    pub fn forwarded_prefix(mut self, prefix: &str) -> Self {
        self.forwarded.prefix = Some(prefix.to_string());
        self
    }

    /// A consumer another plugin already authenticated (`kong.client.get_consumer`).
    pub fn consumer(mut self, consumer: Json) -> Self {
        self.consumer = Some(consumer);
        self
    }

    /// The credential another plugin already authenticated with (`kong.client.get_credential`).
    pub fn credential(mut self, credential: Json) -> Self {
        self.credential = Some(credential);
        self
    }

    /// The matched route entity, replacing the default one. `paths`, `strip_path` and
    /// `preserve_host` shape the upstream request as in Kong.
    pub fn route(mut self, route: Json) -> Self {
        self.route = Some(route);
        self
    }

    /// The service entity, replacing the default one. `protocol`, `host`, `port`, `path`,
    /// `retries` and the timeouts shape the upstream request as in Kong.
    pub fn service(mut self, service: Json) -> Self {
        self.service = Some(service);
        self
    }

    /// A route without a service (`kong.router.get_service` returns nothing).
    pub fn without_service(mut self) -> Self {
        self.service = None;
        self
    }

    /// Appends an unnamed capture of the route's regex path.
    pub fn uri_capture(mut self, value: &str) -> Self {
        self.unnamed_captures.push(value.to_string());
        self
    }

    /// A named capture of the route's regex path.
    pub fn named_uri_capture(mut self, name: &str, value: &str) -> Self {
        self.named_captures
            .push((name.to_string(), value.to_string()));
        self
    }

    /// What the service answers (for the `response` phase and the client response).
    pub fn upstream_response(mut self, response: UpstreamResponse) -> Self {
        self.upstream_response = response;
        self
    }

    /// A `kong.ctx.shared` value set by a plugin that ran before this one.
    pub fn ctx_shared(mut self, key: &str, value: Json) -> Self {
        self.ctx_shared.push((key.to_string(), value));
        self
    }

    /// An nginx variable for `kong.nginx.get_var`, overriding the ones derived from the request.
    pub fn nginx_var(mut self, name: &str, value: &str) -> Self {
        self.nginx_vars.insert(name.to_string(), value.to_string());
        self
    }

    /// An `ngx.ctx` value for `kong.nginx.get_ctx`.
    pub fn nginx_ctx(mut self, key: &str, value: Json) -> Self {
        self.nginx_ctx.push((key.to_string(), value));
        self
    }

    /// A consumer entity in Kong's database, for `kong.client.load_consumer`.
    pub fn known_consumer(mut self, consumer: Json) -> Self {
        self.known_consumers.push(consumer);
        self
    }

    /// An upstream entity's name, so that `kong.service.set_upstream(name)` succeeds.
    pub fn upstream(mut self, name: &str) -> Self {
        self.upstreams.push(name.to_string());
        self
    }

    /// An address or CIDR range in Kong's `trusted_ips` (`kong.ip.is_trusted`).
    pub fn trusted_ip(mut self, cidr: &str) -> Self {
        self.trusted_ips.push(cidr.to_string());
        self
    }

    /// A secret `kong.vault.get(reference)` resolves, e.g. `{vault://env/api-key}`.
    pub fn vault_secret(mut self, reference: &str, value: &str) -> Self {
        self.vault.insert(reference.to_string(), value.to_string());
        self
    }

    /// When Kong received the request, in milliseconds since the epoch (default: now).
    pub fn started_at(mut self, millis: u64) -> Self {
        self.started_at_ms = Some(millis);
        self
    }

    /// The `latencies` of `kong.log.serialize`: Kong's own time, the service's, the total (ms).
    pub fn latencies(mut self, kong: i64, proxy: i64, request: i64) -> Self {
        self.latencies = (kong, proxy, request);
        self
    }

    /// The TLS version of the client connection (default `TLSv1.3` for https and tls).
    pub fn tls_version(mut self, version: &str) -> Self {
        self.tls_version = Some(version.to_string());
        self
    }

    /// The client certificate chain (PEM), for `kong.client.tls.get_full_client_certificate_chain`.
    pub fn client_certificate(mut self, pem: &str) -> Self {
        self.client_certificate = Some(pem.to_string());
        self
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.scheme.as_str(), "https" | "tls" | "grpcs")
    }

    /// The port Kong received the request on.
    pub(crate) fn server_port(&self) -> u16 {
        self.port.unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// The TLS version Kong reports, if the connection is TLS.
    pub(crate) fn tls(&self) -> Option<String> {
        self.tls_version
            .clone()
            .or_else(|| self.is_tls().then(|| "TLSv1.3".to_string()))
    }

    /// `ngx.var.request_uri`: the path and query as received.
    pub(crate) fn request_uri(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// The service's response to the proxied request.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse::new(200)
    }
}

impl UpstreamResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        UpstreamResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    http_message_builders!();
}

fn default_route(protocols: &[&str]) -> Json {
    let http = protocols.iter().any(|p| p.starts_with("http"));
    json!({
        "id": ROUTE_ID,
        "name": "test-route",
        "protocols": protocols,
        "paths": if http { json!(["/"]) } else { Json::Null },
        "hosts": null,
        "methods": null,
        "strip_path": true,
        "preserve_host": false,
        "regex_priority": 0,
        "path_handling": "v0",
        "https_redirect_status_code": 426,
        "request_buffering": true,
        "response_buffering": true,
        "service": { "id": SERVICE_ID },
        "ws_id": WORKSPACE_ID,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
        "tags": null,
    })
}

fn default_service(protocol: &str, port: u16) -> Json {
    json!({
        "id": SERVICE_ID,
        "name": "test-service",
        "protocol": protocol,
        "host": "upstream.test",
        "port": port,
        "path": null,
        "retries": 5,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "enabled": true,
        "tls_verify": null,
        "tls_verify_depth": null,
        "ws_id": WORKSPACE_ID,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
        "tags": null,
    })
}
