//! An in-memory HTTP request answering PDK calls the way Kong's PDK does (protocol.md §11).

use rmpv::Value;

use crate::event::{is_terminal, Exit, PdkCall, PdkResponder};
use crate::value::LuaValue;
use crate::wire::{lua_bytes, lua_integer, lua_is_nil};

/// Kong's default `max_headers` for `kong.request.get_headers`.
const DEFAULT_MAX_HEADERS: usize = 100;

/// An ordered header list; names compare case-insensitively, values are bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All `(name, value)` lines in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a line.
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.0.push((name.to_owned(), value.as_ref().to_vec()));
    }

    /// Removes every line of `name`.
    pub fn clear(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces every line of `name` with the given values.
    pub fn set(&mut self, name: &str, values: impl IntoIterator<Item = Vec<u8>>) {
        self.clear(name);
        for v in values {
            self.add(name, v);
        }
    }
}

/// A fake request plus the side effects a plugin had on it. Implements
/// [`PdkResponder`] for the PDK methods listed on [`SimRequest::respond`]; any
/// other method returns nil (as Kong does for an unknown one) and is recorded in
/// [`SimRequest::unknown_calls`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    method: String,
    path: String,
    headers: Headers,
    status: i64,
    ctx_shared: Vec<(LuaValue, LuaValue)>,
    upstream_headers: Headers,
    response_headers: Headers,
    logs: Vec<(String, String)>,
    exit: Option<Exit>,
    unknown: Vec<PdkCall>,
    /// What the service answered (response phase): status and raw body.
    service_response: (i64, Vec<u8>),
}

impl Default for SimRequest {
    fn default() -> Self {
        SimRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: Headers::default(),
            status: 200,
            ctx_shared: Vec::new(),
            upstream_headers: Headers::default(),
            response_headers: Headers::default(),
            logs: Vec::new(),
            exit: None,
            unknown: Vec::new(),
            service_response: (200, Vec::new()),
        }
    }
}

impl SimRequest {
    /// `GET /`, no headers, response status 200.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the request method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_owned();
        self
    }

    /// Sets the request path (anything after `?` is not part of `get_path`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Adds a request header line (repeat for multiple values).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.add(name, value);
        self
    }

    /// Sets what `kong.response.get_status` returns.
    pub fn status(mut self, status: i64) -> Self {
        self.status = status;
        self
    }

    /// What `kong.service.response.get_status` and `get_raw_body` return.
    pub fn service_response(mut self, status: i64, body: impl AsRef<[u8]>) -> Self {
        self.service_response = (status, body.as_ref().to_vec());
        self
    }

    /// Pre-populates `kong.ctx.shared` (e.g. as set by an earlier plugin).
    pub fn ctx_shared(mut self, key: &str, value: LuaValue) -> Self {
        self.set_ctx(LuaValue::str(key), value);
        self
    }

    /// The request headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Headers set for the upstream request by `kong.service.request.*_header`.
    pub fn upstream_headers(&self) -> &Headers {
        &self.upstream_headers
    }

    /// Headers set on the response by `kong.response.*_header`.
    pub fn response_headers(&self) -> &Headers {
        &self.response_headers
    }

    /// `(level, message)` for each `kong.log.*` call, in order.
    pub fn logs(&self) -> &[(String, String)] {
        &self.logs
    }

    /// The terminal `kong.response.exit`/`error` call, if any.
    pub fn exit(&self) -> Option<&Exit> {
        self.exit.as_ref()
    }

    /// A `kong.ctx.shared` value by string key.
    pub fn shared(&self, key: &str) -> Option<&LuaValue> {
        let key = LuaValue::str(key);
        self.ctx_shared
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Calls this request does not implement (answered with nil).
    pub fn unknown_calls(&self) -> &[PdkCall] {
        &self.unknown
    }

    /// nginx `$host`: the Host header lower-cased without port, else the server
    /// name (`kong` in Kong's nginx template).
    fn host(&self) -> String {
        self.headers
            .get("host")
            .map(|h| {
                let h = String::from_utf8_lossy(h).to_ascii_lowercase();
                let end = match h.find(']') {
                    Some(i) if h.starts_with('[') => i + 1,
                    _ => h.find(':').unwrap_or(h.len()),
                };
                h[..end].to_owned()
            })
            .unwrap_or_else(|| "kong".into())
    }

    /// `kong.request.get_header`: Kong reads `ngx.var.http_<name>`, so the name is
    /// case-insensitive and `-`/`_` are interchangeable.
    fn request_header(&self, name: &[u8]) -> Option<LuaValue> {
        let norm = |n: &[u8]| -> Vec<u8> {
            n.iter()
                .map(|&b| {
                    if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_lowercase()
                    }
                })
                .collect()
        };
        let want = norm(name);
        self.headers
            .iter()
            .find(|(n, _)| norm(n.as_bytes()) == want)
            .map(|(_, v)| LuaValue::str(v))
    }

    /// `kong.request.get_headers(max)`: the first `max` lines grouped by
    /// lower-cased name, already in multi-map form.
    fn request_headers(&self, max: Option<usize>) -> LuaValue {
        let mut grouped: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for (name, value) in self.headers.iter().take(max.unwrap_or(DEFAULT_MAX_HEADERS)) {
            let name = name.to_ascii_lowercase();
            match grouped.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value.to_vec()),
                None => grouped.push((name, vec![value.to_vec()])),
            }
        }
        LuaValue::multimap(grouped)
    }

    fn set_ctx(&mut self, key: LuaValue, value: LuaValue) {
        self.ctx_shared.retain(|(k, _)| *k != key);
        if value != LuaValue::Nil {
            self.ctx_shared.push((key, value));
        }
    }

    /// Records a header change (`set`, `add` or `clear`) on `target`.
    fn header_change(target: &mut Headers, op: &str, args: &[Value]) {
        let Some(name) = args.first().and_then(lua_bytes) else {
            return;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let values: Vec<Vec<u8>> = match args.get(1) {
            Some(Value::Array(items)) => items.iter().map(lua_tostring).collect(),
            Some(v) => vec![lua_tostring(v)],
            None => Vec::new(),
        };
        match op {
            "set_header" => target.set(&name, values),
            "add_header" => values.into_iter().for_each(|v| target.add(&name, v)),
            _ => target.clear(&name),
        }
    }
}

impl SimRequest {
    /// `set_headers(table)`: a `set_header` per entry of the table.
    fn set_headers(target: &mut Headers, args: &[Value]) {
        if let Some(Value::Map(entries)) = args.first() {
            for (name, value) in entries {
                Self::header_change(target, "set_header", &[name.clone(), value.clone()]);
            }
        }
    }
}

impl PdkResponder for SimRequest {
    /// Implements `kong.request.get_header/get_headers/get_method/get_path/
    /// get_host`, `kong.service.request.set_header/add_header/clear_header/set_headers`,
    /// `kong.response.set_header/add_header/clear_header/set_headers/get_status/exit/error`,
    /// `kong.log` and `kong.log.<level>`, `kong.ctx.shared.get/set`.
    fn respond(&mut self, method: &str, args: &[Value]) -> Option<LuaValue> {
        let arg_bytes = |i: usize| args.get(i).and_then(lua_bytes);
        if is_terminal(method) {
            self.exit = Some(Exit {
                method: method.to_owned(),
                args: args.to_vec(),
            });
            return None;
        }
        if let Some(level) = log_level(method) {
            let message = args.iter().flat_map(lua_tostring).collect::<Vec<u8>>();
            self.logs.push((
                level.to_owned(),
                String::from_utf8_lossy(&message).into_owned(),
            ));
            return None;
        }
        if let Some(op) = method.strip_prefix("kong.service.request.") {
            if matches!(op, "set_header" | "add_header" | "clear_header") {
                Self::header_change(&mut self.upstream_headers, op, args);
                return None;
            }
            if op == "set_headers" {
                Self::set_headers(&mut self.upstream_headers, args);
                return None;
            }
        }
        if let Some(op) = method.strip_prefix("kong.response.") {
            if matches!(op, "set_header" | "add_header" | "clear_header") {
                Self::header_change(&mut self.response_headers, op, args);
                return None;
            }
            if op == "set_headers" {
                Self::set_headers(&mut self.response_headers, args);
                return None;
            }
        }
        match method {
            "kong.request.get_header" => arg_bytes(0).and_then(|n| self.request_header(n)),
            "kong.request.get_headers" => {
                let max = args
                    .first()
                    .and_then(lua_integer)
                    .and_then(|n| usize::try_from(n).ok());
                Some(self.request_headers(max))
            }
            "kong.request.get_method" => Some(LuaValue::str(&self.method)),
            "kong.request.get_path" => {
                let path = self.path.split('?').next().unwrap_or_default();
                Some(LuaValue::str(path))
            }
            "kong.request.get_host" => Some(LuaValue::str(self.host())),
            "kong.response.get_status" => Some(LuaValue::int(self.status)),
            "kong.service.response.get_status" => Some(LuaValue::int(self.service_response.0)),
            "kong.service.response.get_raw_body" => Some(LuaValue::bin(&self.service_response.1)),
            // The part of Kong's log serializer the tests read (protocol.md §10.3), as JSON
            // text: Kong's bridge wraps `kong.log.serialize` in `cjson.encode`.
            "kong.log.serialize" => Some(LuaValue::str(json(&LuaValue::map([
                (
                    "request",
                    LuaValue::map([
                        ("method", LuaValue::str(&self.method)),
                        ("uri", LuaValue::str(&self.path)),
                    ]),
                ),
                (
                    "response",
                    LuaValue::map([("status", LuaValue::int(self.status))]),
                ),
            ])))),
            "kong.ctx.shared.get" => {
                let key = LuaValue::from_msgpack(args.first().unwrap_or(&Value::Nil));
                self.ctx_shared
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            }
            "kong.ctx.shared.set" => {
                let key = args.first().filter(|k| !lua_is_nil(k));
                if let Some(key) = key {
                    let value = LuaValue::from_msgpack(args.get(1).unwrap_or(&Value::Nil));
                    self.set_ctx(LuaValue::from_msgpack(key), value);
                }
                None
            }
            _ => {
                self.unknown.push(PdkCall {
                    method: method.to_owned(),
                    args: args.to_vec(),
                });
                None
            }
        }
    }
}

/// The level a `kong.log` method logs at (`kong.log(...)` is `notice`).
fn log_level(method: &str) -> Option<&'static str> {
    match method {
        "kong.log" | "kong.log.notice" => Some("notice"),
        "kong.log.alert" => Some("alert"),
        "kong.log.crit" => Some("crit"),
        "kong.log.err" => Some("err"),
        "kong.log.warn" => Some("warn"),
        "kong.log.info" => Some("info"),
        "kong.log.debug" => Some("debug"),
        _ => None,
    }
}

/// Lua's `tostring` of a value Kong decoded from the server.
pub fn lua_tostring(v: &Value) -> Vec<u8> {
    match v {
        Value::Nil | Value::Ext(..) => b"nil".to_vec(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Binary(b) => b.clone(),
        Value::Array(_) | Value::Map(_) => b"table: 0x00000000".to_vec(),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            lua_number_to_string(v.as_f64().unwrap_or(f64::NAN)).into_bytes()
        }
    }
}

/// `cjson.encode` of a table of strings, numbers, booleans and tables.
fn json(value: &LuaValue) -> String {
    let text = |bytes: &[u8]| {
        let mut out = String::from('"');
        for c in String::from_utf8_lossy(bytes).chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    match value {
        LuaValue::Nil => "null".into(),
        LuaValue::Bool(b) => b.to_string(),
        LuaValue::Num(n) => lua_number_to_string(*n),
        LuaValue::Str(s) | LuaValue::Bin(s) => text(s),
        LuaValue::Array(items) => {
            let items: Vec<String> = items.iter().map(json).collect();
            format!("[{}]", items.join(","))
        }
        LuaValue::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| match k {
                    LuaValue::Str(key) => format!("{}:{}", text(key), json(v)),
                    other => format!("{}:{}", text(json(other).as_bytes()), json(v)),
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        }
        LuaValue::EmptyMap => "{}".into(),
    }
}

/// LuaJIT formats numbers with `%.14g`.
pub fn lua_number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{x:.13e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..14).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(13 - exp).unwrap_or(0);
        trim(&format!("{x:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::hex;

    fn call(sim: &mut SimRequest, method: &str, args: Vec<Value>) -> Option<LuaValue> {
        sim.respond(method, &args)
    }

    #[test]
    fn request_getters() {
        let mut sim = SimRequest::new()
            .method("POST")
            .path("/a/b?x=1")
            .header("Host", "Example.COM:8000")
            .header("X-Multi", "1")
            .header("x-multi", [0xff, 0x00])
            .header("X_Under", "u");
        assert_eq!(
            call(&mut sim, "kong.request.get_header", vec!["x-MULTI".into()]),
            Some(LuaValue::str("1"))
        );
        assert_eq!(
            call(&mut sim, "kong.request.get_header", vec!["x-under".into()]),
            Some(LuaValue::str("u"))
        );
        assert_eq!(
            call(&mut sim, "kong.request.get_header", vec!["nope".into()]),
            None
        );
        assert_eq!(
            call(&mut sim, "kong.request.get_method", vec![]),
            Some(LuaValue::str("POST"))
        );
        assert_eq!(
            call(&mut sim, "kong.request.get_path", vec![]),
            Some(LuaValue::str("/a/b"))
        );
        assert_eq!(
            call(&mut sim, "kong.request.get_host", vec![]),
            Some(LuaValue::str("example.com"))
        );
        let headers = call(&mut sim, "kong.request.get_headers", vec![]).unwrap();
        assert_eq!(
            headers.to_bytes(),
            hex(
                r#"83 a4 "host" 91 b0 "Example.COM:8000" a7 "x-multi" 92 a1 "1" a2 ff 00 a7 "x_under" 91 a1 "u""#
            )
        );
        let one = call(&mut sim, "kong.request.get_headers", vec![1.into()]).unwrap();
        assert_eq!(
            one,
            LuaValue::multimap([("host", vec!["Example.COM:8000"])])
        );
        let mut empty = SimRequest::new();
        assert_eq!(
            call(&mut empty, "kong.request.get_headers", vec![]),
            Some(LuaValue::EmptyMap)
        );
        assert_eq!(
            call(&mut empty, "kong.request.get_host", vec![]),
            Some(LuaValue::str("kong"))
        );
        assert!(sim.unknown_calls().is_empty());
    }

    #[test]
    fn side_effects_are_recorded() {
        let mut sim = SimRequest::new().status(201);
        call(
            &mut sim,
            "kong.service.request.set_header",
            vec!["X-Up".into(), 5.into()],
        );
        call(
            &mut sim,
            "kong.service.request.set_header",
            vec!["x-up".into(), "six".into()],
        );
        call(
            &mut sim,
            "kong.response.set_header",
            vec!["X-Many".into(), Value::Array(vec!["a".into(), true.into()])],
        );
        call(
            &mut sim,
            "kong.response.add_header",
            vec!["X-Many".into(), 1.5.into()],
        );
        assert_eq!(sim.upstream_headers().get_str("X-UP"), Some("six"));
        assert_eq!(sim.upstream_headers().len(), 1);
        let many: Vec<_> = sim.response_headers().get_all("x-many").collect();
        assert_eq!(many, [&b"a"[..], b"true", b"1.5"]);
        assert_eq!(
            call(&mut sim, "kong.response.get_status", vec![]),
            Some(LuaValue::int(201))
        );
        call(
            &mut sim,
            "kong.log.err",
            vec![
                "n=".into(),
                3.into(),
                " ".into(),
                Value::Nil,
                Value::Map(vec![]),
            ],
        );
        call(&mut sim, "kong.log", vec!["plain".into()]);
        assert_eq!(
            sim.logs(),
            [
                ("err".to_owned(), "n=3 niltable: 0x00000000".to_owned()),
                ("notice".to_owned(), "plain".to_owned())
            ]
        );
        call(
            &mut sim,
            "kong.ctx.shared.set",
            vec!["k".into(), Value::Map(vec![(1.into(), "a".into())])],
        );
        assert_eq!(
            call(&mut sim, "kong.ctx.shared.get", vec!["k".into()]),
            Some(LuaValue::array(["a"]))
        );
        call(
            &mut sim,
            "kong.ctx.shared.set",
            vec!["k".into(), Value::Nil],
        );
        assert_eq!(
            call(&mut sim, "kong.ctx.shared.get", vec!["k".into()]),
            None
        );
        assert_eq!(call(&mut sim, "kong.nginx.get_var", vec!["x".into()]), None);
        assert_eq!(sim.unknown_calls()[0].method, "kong.nginx.get_var");
        assert_eq!(call(&mut sim, "kong.response.exit", vec![404.into()]), None);
        assert_eq!(sim.exit().and_then(Exit::status), Some(404));
    }

    #[test]
    fn number_formatting_is_percent_14g() {
        let cases: &[(f64, &str)] = &[
            (3.0, "3"),
            (-2.0, "-2"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (1e14, "1e+14"),
            (12345678901234.0, "12345678901234"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789012345678.0, "1.2345678901235e+17"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(lua_number_to_string(*x), *want, "{x}");
        }
    }
}
