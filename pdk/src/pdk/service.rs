use super::{value, Bridge, Headers, MultiMap};
use crate::Result;
use rmpv::Value;
use serde::{de::DeserializeOwned, Serialize};

/// `kong.service`: where and how Kong connects upstream. Phase: access, unless said otherwise.
#[derive(Clone, Copy)]
pub struct Service<'a> {
    /// `kong.service.request`: the request as it will be sent upstream.
    pub request: ServiceRequest<'a>,
    /// `kong.service.response`: the response the service gave.
    pub response: ServiceResponse<'a>,
    bridge: Bridge<'a>,
}

impl<'a> Service<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Service {
            request: ServiceRequest { bridge },
            response: ServiceResponse { bridge },
            bridge,
        }
    }

    /// Proxies to upstream entity `host` (load-balanced over its targets); `false` when there
    /// is no such upstream.
    pub fn set_upstream(&self, host: &str) -> Result<bool> {
        self.bridge.call_as(
            "kong.service.set_upstream",
            vec![Value::from(host)],
            value::done,
        )
    }

    /// Proxies to `host`:`port` directly, bypassing load balancing.
    pub fn set_target(&self, host: &str, port: u16) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.set_target",
            vec![Value::from(host), Value::from(port)],
        )
    }

    /// How many times Kong retries a failed connection (0–32767).
    pub fn set_retries(&self, retries: u16) -> Result<()> {
        self.bridge
            .call_unit("kong.service.set_retries", vec![Value::from(retries)])
    }

    /// Connect, write and read timeouts, in milliseconds (1–2147483646).
    pub fn set_timeouts(&self, connect: u32, write: u32, read: u32) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.set_timeouts",
            vec![Value::from(connect), Value::from(write), Value::from(read)],
        )
    }

    /// Whether Kong verifies the service's TLS certificate; `true` when applied.
    /// Phases: rewrite, access, preread.
    pub fn set_tls_verify(&self, on: bool) -> Result<bool> {
        self.bridge.call_as(
            "kong.service.set_tls_verify",
            vec![Value::Boolean(on)],
            value::done,
        )
    }

    /// The maximum certificate chain depth when verifying the service; `true` when applied.
    /// Phases: rewrite, access, preread.
    pub fn set_tls_verify_depth(&self, depth: u32) -> Result<bool> {
        self.bridge.call_as(
            "kong.service.set_tls_verify_depth",
            vec![Value::from(depth)],
            value::done,
        )
    }
}

/// `kong.service.request`: changes to the request Kong sends upstream (`kong.request` sees
/// them too). Phases: rewrite, access, unless said otherwise.
#[derive(Clone, Copy)]
pub struct ServiceRequest<'a> {
    bridge: Bridge<'a>,
}

/// The scheme Kong uses upstream (`kong.service.request.set_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// The name Kong takes: `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl ServiceRequest<'_> {
    /// Buffers the service's response so the response phase can read and change it (what
    /// implementing `response` does for every request).
    pub fn enable_buffering(&self) -> Result<()> {
        self.bridge
            .call_unit("kong.service.request.enable_buffering", vec![])
    }

    /// The scheme used to reach the service (`kong.service.request.set_scheme`).
    pub fn set_scheme(&self, scheme: Scheme) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_scheme",
            vec![Value::from(scheme.as_str())],
        )
    }

    /// The upstream path, which must start with `/`; Kong escapes it as needed.
    pub fn set_path(&self, path: &str) -> Result<()> {
        self.bridge
            .call_unit("kong.service.request.set_path", vec![Value::from(path)])
    }

    /// The upstream query string, without `?`, sent as is.
    pub fn set_raw_query(&self, query: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_raw_query",
            vec![Value::from(query)],
        )
    }

    /// The upstream method, upper case (`GET`, `POST`, … as nginx knows them).
    pub fn set_method(&self, method: &str) -> Result<()> {
        self.bridge
            .call_unit("kong.service.request.set_method", vec![Value::from(method)])
    }

    /// Replaces the query with `args`, encoded by Kong; an argument without values is a flag
    /// (`?debug`), as [`kong.request.get_query`](super::Request::get_query) reports one.
    pub fn set_query(&self, args: &MultiMap) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_query",
            vec![value::query_value(args)],
        )
    }

    /// Removes every query argument `name`.
    pub fn clear_query_arg(&self, name: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.clear_query_arg",
            vec![Value::from(name)],
        )
    }

    /// Sets upstream request header `name`, replacing any value it had (`host` sets the `Host`
    /// Kong sends).
    ///
    /// Reaches Kong with the header writes around it: consecutive writes are held and sent as
    /// one `kong.service.request.set_headers` before the handler's next other PDK call, before
    /// `kong.response.exit`, or when the handler returns (also with `Err`). Not held, so sent
    /// at once: writes outside rewrite and access (Kong refuses them there), and to `host` (also
    /// the upstream host) or `:authority`.
    pub fn set_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_header",
            vec![Value::from(name), Value::from(value)],
        )
    }

    /// Adds a value to upstream request header `name`, keeping the ones it had.
    ///
    /// Held like [`set_header`](ServiceRequest::set_header) when it follows a held write to the
    /// same name (its values are then known); otherwise what is held is sent and this add goes
    /// to Kong at once, since Kong adds to the values only it knows.
    pub fn add_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.add_header",
            vec![Value::from(name), Value::from(value)],
        )
    }

    /// Removes upstream request header `name`.
    pub fn clear_header(&self, name: &str) -> Result<()> {
        self.bridge
            .call_unit("kong.service.request.clear_header", vec![Value::from(name)])
    }

    /// Sets each header of `headers` (with all its values), replacing the values they had;
    /// other headers are kept.
    pub fn set_headers(&self, headers: &Headers) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_headers",
            vec![value::multi_map_value(headers)],
        )
    }

    /// Replaces the body sent upstream (nginx updates `Content-Length`).
    pub fn set_raw_body(&self, body: impl AsRef<[u8]>) -> Result<()> {
        self.bridge.call_unit(
            "kong.service.request.set_raw_body",
            vec![value::bytes_value(body.as_ref())],
        )
    }

    /// Replaces the body with `args` encoded by Kong as `mimetype` (default: the request's
    /// `Content-Type`): JSON, form-urlencoded or multipart. `false` when there is no content
    /// type to encode by.
    pub fn set_body<T: Serialize + ?Sized>(
        &self,
        args: &T,
        mimetype: Option<&str>,
    ) -> Result<bool> {
        const METHOD: &str = "kong.service.request.set_body";
        let mut call_args = vec![value::encode(METHOD, args)?];
        call_args.extend(mimetype.map(Value::from));
        self.bridge.call_as(METHOD, call_args, value::done)
    }

    /// Connects to the service without TLS; `true` when applied. Phase: preread.
    pub fn disable_tls(&self) -> Result<bool> {
        self.bridge
            .call_as("kong.service.request.disable_tls", vec![], value::done)
    }
}

/// `kong.service.response`: the response the service gave, before plugins changed it.
/// Phase: response.
#[derive(Clone, Copy)]
pub struct ServiceResponse<'a> {
    bridge: Bridge<'a>,
}

impl ServiceResponse<'_> {
    /// The service's status code.
    pub fn get_status(&self) -> Result<u16> {
        self.bridge.call_as(
            "kong.service.response.get_status",
            vec![],
            value::u16_integer,
        )
    }

    /// First value of the service's header `name` (case-insensitive), `None` when absent.
    pub fn get_header(&self, name: &str) -> Result<Option<String>> {
        self.bridge.header("kong.service.response.get_header", name)
    }

    /// Every header of the service's response, lower-case names; at most `max_headers`
    /// (Kong's default: 100).
    pub fn get_headers(&self, max_headers: Option<u32>) -> Result<Headers> {
        self.bridge
            .headers("kong.service.response.get_headers", max_headers)
    }

    /// The service's body (the response phase proxies buffered, so it is there).
    pub fn get_raw_body(&self) -> Result<Vec<u8>> {
        self.bridge
            .call_as("kong.service.response.get_raw_body", vec![], value::bytes)
    }

    /// The service's body decoded by Kong as `mimetype` (default: its `Content-Type`) into
    /// `T`; `None` when Kong cannot decode it. `max_args` (default 100) bounds form arguments.
    pub fn get_body<T: DeserializeOwned>(
        &self,
        mimetype: Option<&str>,
        max_args: Option<u32>,
    ) -> Result<Option<T>> {
        self.bridge.body(
            (
                "kong.service.response.get_body",
                "kong.service.response.get_header",
            ),
            mimetype,
            vec![(max_args.map(Value::from), Value::from(100))],
        )
    }
}
