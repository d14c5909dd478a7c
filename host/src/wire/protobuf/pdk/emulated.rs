//! PDK methods Kong's `.proto` lacks, built from methods it has, with the semantics of Kong's own
//! Lua (`kong/pdk/*.lua`, 3.9.3): each gives the result MsgPack:1 would have carried.

use super::{
    arg, convert, decode, invalid_call, kong_error, lua_number, lua_string, pb, Arg, HostError,
    Kong, Value, MAX_DEFAULT,
};

type Result<T> = std::result::Result<T, HostError>;

/// `kong.log(...)` logs at notice level.
pub(super) fn log_notice(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    kong.call("kong.log.notice", args)
}

/// `kong.plugin.get_id()` is `ngx.ctx.plugin_id`, which Kong sets to the running plugin.
pub(super) fn plugin_id(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    kong.call("kong.nginx.get_ctx", &[Value::from("plugin_id")])
}

/// `get_query()[name]`, its first value when repeated (request.lua, `get_query_arg`). Kong's
/// own `Request_GetQueryArg` cannot return a flag (`true`): wrapping it in a `String` raises.
pub(super) fn query_arg(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    let name = match arg(args, 0) {
        Value::String(name) => name.as_bytes().to_vec(),
        other => {
            return Err(invalid_call(format!(
                "kong.request.get_query_arg: query argument name must be a string, not {other}"
            )))
        }
    };
    const GET_QUERY: &str = "kong.request.get_query";
    let answer = kong.round_trip(GET_QUERY, MAX_DEFAULT, &[])?;
    let query = decode::<prost_types::Struct>(&answer)
        .map_err(|error| kong_error(format!("{GET_QUERY}: {error}")))?;
    let value = query
        .fields
        .get(String::from_utf8_lossy(&name).as_ref())
        .map(convert::value_of_pb)
        .unwrap_or(Value::Nil);
    Ok(match value {
        Value::Array(mut values) if !values.is_empty() => values.swap_remove(0),
        Value::Array(_) => Value::Nil,
        value => value,
    })
}

/// `ngx.var.request_uri` up to its query (request.lua, `get_raw_path`).
pub(super) fn raw_path(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    let uri = kong.call("kong.nginx.get_var", &[Value::from("request_uri")])?;
    let uri = match uri {
        Value::String(uri) => uri.into_bytes(),
        _ => Vec::new(),
    };
    // Lua's `find(uri, "?", 2, true)`: a `?` in the first byte does not count.
    let end = uri
        .iter()
        .skip(1)
        .position(|&byte| byte == b'?')
        .map_or(uri.len(), |at| at + 1);
    Ok(lua_string(uri[..end].to_vec()))
}

/// Whether the client's address is trusted (request.lua, `is_trusted_ip`).
fn client_is_trusted(kong: &mut Kong<'_>) -> Result<bool> {
    let ip = kong.call("kong.client.get_ip", &[])?;
    Ok(kong.call("kong.ip.is_trusted", &[ip])? == Value::from(true))
}

/// A forwarded header, only from a trusted client.
fn trusted_header(kong: &mut Kong<'_>, name: &str) -> Result<Value> {
    if !client_is_trusted(kong)? {
        return Ok(Value::Nil);
    }
    kong.call("kong.request.get_header", &[Value::from(name)])
}

/// `X-Forwarded-Path` from a trusted client, else the path.
pub(super) fn forwarded_path(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    match trusted_header(kong, "X-Forwarded-Path")? {
        Value::Nil => kong.call("kong.request.get_path", &[]),
        path => Ok(path),
    }
}

/// `X-Forwarded-Prefix` from a trusted client, else `ngx.var.upstream_x_forwarded_prefix`.
pub(super) fn forwarded_prefix(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    match trusted_header(kong, "X-Forwarded-Prefix")? {
        Value::Nil => kong.call(
            "kong.nginx.get_var",
            &[Value::from("upstream_x_forwarded_prefix")],
        ),
        prefix => Ok(prefix),
    }
}

/// `ngx.ctx.KONG_PROCESSING_START`, else `ngx.req.start_time() * 1000` (milliseconds).
pub(super) fn start_time(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    match kong.call(
        "kong.nginx.get_ctx",
        &[Value::from("KONG_PROCESSING_START")],
    )? {
        Value::Nil => {
            let seconds = kong.call("kong.nginx.req_start_time", &[])?;
            let seconds = seconds.as_f64().unwrap_or_default();
            Ok(lua_number(seconds * 1000.0))
        }
        start => Ok(start),
    }
}

/// `ngx.ctx.buffered_proxying = true`.
pub(super) fn enable_buffering(kong: &mut Kong<'_>, _: &[Value]) -> Result<Value> {
    kong.call(
        "kong.nginx.set_ctx",
        &[Value::from("buffered_proxying"), Value::from(true)],
    )?;
    Ok(Value::Nil)
}

/// Removes every `name` argument from the query sent upstream (`ngx.var.args`), which Kong
/// re-serializes through WHATWG's URLSearchParams (`resty.ada.search.remove`): the same
/// parsing and serialization as the `form_urlencoded` crate.
pub(super) fn clear_query_arg(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    let name = match arg(args, 0) {
        Value::String(name) => String::from_utf8_lossy(name.as_bytes()).into_owned(),
        other => {
            return Err(invalid_call(format!(
                "kong.service.request.clear_query_arg: query argument name must be a string, not {other}"
            )))
        }
    };
    let query = match kong.call("kong.request.get_raw_query", &[])? {
        Value::String(query) => query.into_bytes(),
        _ => Vec::new(),
    };
    if query.is_empty() {
        return Ok(Value::Nil);
    }
    let kept = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(&query).filter(|(key, _)| *key != name))
        .finish();
    kong.call("kong.service.request.set_raw_query", &[Value::from(kept)])?;
    Ok(Value::Nil)
}

/// How a body is read for `get_body`: from Kong, as bytes, or nil when it is not in memory.
type ReadBody = fn(&mut Kong<'_>) -> Result<Option<Vec<u8>>>;

/// `kong.request.get_body(mimetype?, max_args?, max_allowed_file_size?)`.
pub(super) fn request_body(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    fn read(kong: &mut Kong<'_>) -> Result<Option<Vec<u8>>> {
        const GET_RAW_BODY: &str = "kong.request.get_raw_body";
        let answer = kong.round_trip(GET_RAW_BODY, Arg::None, &[])?;
        let result = decode::<pb::RawBodyResult>(&answer)
            .map_err(|error| kong_error(format!("{GET_RAW_BODY}: {error}")))?;
        Ok(match result.kind {
            Some(pb::raw_body_result::Kind::Content(body)) => Some(body),
            // In a file, or unreadable: Kong's get_body answers nil then.
            _ => None,
        })
    }
    decode_body(kong, args, "kong.request.get_header", read)
}

/// `kong.service.response.get_body(mimetype?, max_args?)`: only with buffered proxying.
pub(super) fn service_response_body(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    let buffered = kong.call("kong.nginx.get_ctx", &[Value::from("buffered_proxying")])?;
    if !matches!(buffered, Value::Nil | Value::Boolean(false)) {
        fn read(kong: &mut Kong<'_>) -> Result<Option<Vec<u8>>> {
            match kong.call("kong.service.response.get_raw_body", &[])? {
                Value::Binary(body) => Ok(Some(body)),
                _ => Ok(None),
            }
        }
        return decode_body(kong, args, "kong.service.response.get_header", read);
    }
    Err(kong_error(
        "kong.service.response.get_body: service body is only available with buffered proxying \
         (see: kong.service.request.enable_buffering function)"
            .into(),
    ))
}

/// Kong's `get_body`: the body decoded by its content type (the `mimetype` argument, else the
/// message's `Content-Type`), nil when there is none or Kong cannot decode it.
fn decode_body(
    kong: &mut Kong<'_>,
    args: &[Value],
    get_header: &str,
    read: ReadBody,
) -> Result<Value> {
    let content_type = match arg(args, 0) {
        Value::Nil => kong.call(get_header, &[Value::from("Content-Type")])?,
        mimetype => mimetype.clone(),
    };
    let Some(content_type) = convert::text(&content_type) else {
        return Ok(Value::Nil);
    };
    let media_type = content_type.to_ascii_lowercase();
    let media_type = media_type.split(';').next().unwrap_or_default();
    if media_type.starts_with("application/x-www-form-urlencoded") {
        let max_args = match arg(args, 1) {
            Value::Nil => 100,
            max => convert::integer(max).unwrap_or(100).max(1) as usize,
        };
        return Ok(read(kong)?.map_or(Value::Nil, |body| form_args(&body, max_args)));
    }
    if media_type.starts_with("application/json") {
        return Ok(read(kong)?
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .filter(|json| json.is_object() || json.is_array())
            .map_or(Value::Nil, |json| json_value(&json)));
    }
    if media_type.starts_with("multipart/form-data") {
        return Err(invalid_call(
            "a multipart/form-data body is not decoded over ProtoBuf:1 (Kong's .proto has no \
             get_body): read it with get_raw_body, or serve this plugin with MsgPack:1 \
             (docs/pdk-protocols.md)"
                .into(),
        ));
    }
    Ok(Value::Nil)
}

/// `ngx.decode_args`/`ngx.req.get_post_args`: `a=1&a=2&flag` is `{a = {"1", "2"}, flag =
/// true}`; `+` is a space; an empty name is skipped; at most `max_args` arguments.
fn form_args(body: &[u8], max_args: usize) -> Value {
    let decode = |part: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced).collect()
    };
    let mut entries: Vec<(Vec<u8>, Vec<Value>)> = Vec::new();
    for part in body
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .take(max_args)
    {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(at) => (decode(&part[..at]), lua_string(decode(&part[at + 1..]))),
            None => (decode(part), Value::from(true)),
        };
        if name.is_empty() {
            continue;
        }
        match entries.iter_mut().find(|(known, _)| *known == name) {
            Some((_, values)) => values.push(value),
            None => entries.push((name, vec![value])),
        }
    }
    if entries.is_empty() {
        return Value::Array(Vec::new());
    }
    Value::Map(
        entries
            .into_iter()
            .map(|(name, mut values)| {
                let value = if values.len() == 1 {
                    values.remove(0)
                } else {
                    Value::Array(values)
                };
                (lua_string(name), value)
            })
            .collect(),
    )
}

/// A cjson-decoded document as lua-MessagePack packs it: numbers are Lua doubles, null is nil,
/// an empty object or array is an empty table (an empty array).
fn json_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(flag) => Value::from(*flag),
        serde_json::Value::Number(number) => lua_number(number.as_f64().unwrap_or_default()),
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_value).collect()),
        serde_json::Value::Object(fields) if fields.is_empty() => Value::Array(Vec::new()),
        serde_json::Value::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), json_value(value)))
                .collect(),
        ),
    }
}

const JSON: &str = "application/json; charset=utf-8";
const GRPC: &str = "application/grpc";

/// `kong.response.error(status, message?, headers?)` (response.lua, `error`): an exit whose body
/// is Kong's error template for the content type, chosen from the `Content-Type` header
/// argument, else `application/grpc` for a gRPC request, else the request's `Accept`; with the
/// request id. Kong's custom templates (`error_template_*` in kong.conf) are not known here.
pub(super) fn response_error(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    const METHOD: &str = "kong.response.error";
    let status = convert::integer(arg(args, 0))
        .filter(|status| (400..=599).contains(status))
        .ok_or_else(|| {
            invalid_call(format!(
                "{METHOD}: code must be a number between 400 and 599"
            ))
        })?;
    let message = match arg(args, 1) {
        Value::Nil => kong_rust_abi::kong_error_message(status as u16),
        text @ (Value::String(_) | Value::Binary(_)) => convert::text(text).unwrap_or_default(),
        other => convert::cjson_encode(other).map_err(|why| {
            invalid_call(format!(
                "{METHOD}: could not JSON encode the error message: {why}"
            ))
        })?,
    };
    let mut headers = match arg(args, 2) {
        Value::Map(headers) => headers.clone(),
        Value::Nil => Vec::new(),
        Value::Array(empty) if empty.is_empty() => Vec::new(),
        other => {
            return Err(invalid_call(format!(
                "{METHOD}: headers must be a nil or table, not {other}"
            )))
        }
    };
    // What the exit will carry is checked before any round trip: a terminal call that fails
    // half-way would leave Kong waiting on the event's connection.
    super::map_arg(&Value::Map(headers.clone()), "the headers")
        .map_err(|why| invalid_call(format!("{METHOD}: {why}")))?;
    // Kong looks up exactly "Content-Type" (a Lua table key) and uses its first value.
    let given = headers
        .iter()
        .position(|(name, _)| name.as_str() == Some("Content-Type"));
    let content_type = match given.map(|at| &headers[at].1) {
        Some(Value::Array(values)) => values.first().and_then(convert::text),
        Some(value) => convert::text(value),
        None => None,
    };
    let template = |content_type: &str| {
        error_template(content_type).ok_or_else(|| {
            invalid_call(format!(
                "{METHOD}: no template found for MIME type {content_type}"
            ))
        })
    };
    if let Some(given) = content_type.as_deref().filter(|given| *given != GRPC) {
        template(given)?;
    }
    let content_type = match content_type {
        Some(content_type) => content_type,
        None => negotiated_type(kong)?,
    };
    let body = if content_type == GRPC {
        Vec::new()
    } else {
        let template = template(&content_type)?;
        let request_id = kong.call("kong.nginx.get_var", &[Value::from("kong_request_id")])?;
        let request_id = convert::text(&request_id).unwrap_or_default();
        template
            .replacen("%s", &message, 1)
            .replacen("%s", &request_id, 1)
            .into_bytes()
    };
    let content_type_header = (Value::from("Content-Type"), Value::from(content_type));
    match given {
        Some(at) => headers[at] = content_type_header,
        None => headers.push(content_type_header),
    }
    kong.call(
        "kong.response.exit",
        &[
            Value::from(status),
            Value::Binary(body),
            Value::Map(headers),
        ],
    )
}

/// The content type for an error body when the plugin gave none: gRPC for a gRPC request
/// (`is_grpc_request`: an `application/grpc` content type over HTTP/2), else from `Accept`.
fn negotiated_type(kong: &mut Kong<'_>) -> Result<String> {
    let headers = kong.call("kong.request.get_headers", &[Value::from(100)])?;
    let values = |name: &str| -> Vec<String> {
        let Value::Map(entries) = &headers else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(key, _)| key.as_str() == Some(name))
            .flat_map(|(_, values)| match values {
                Value::Array(values) => values.iter().filter_map(convert::text).collect::<Vec<_>>(),
                value => convert::text(value).into_iter().collect(),
            })
            .collect()
    };
    let request_type = values("content-type");
    if request_type.first().is_some_and(|t| t.starts_with(GRPC))
        && kong.call("kong.request.get_http_version", &[])? == Value::from(2)
    {
        return Ok(GRPC.to_string());
    }
    Ok(response_type(&values("accept").join(",")).to_string())
}

/// Kong's `get_response_type` (`kong/tools/http.lua`): the media type of highest quality among
/// those `Accept` lists (the first on a tie), as Kong's MIME type; JSON when none is known.
fn response_type(accept: &str) -> &'static str {
    let mut best = (0.0, JSON);
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let Some((kind, subtype)) = media.split_once('/') else {
            continue;
        };
        if kind.is_empty() || subtype.is_empty() {
            continue;
        }
        let quality = parts
            .filter_map(|p| p.strip_prefix("q="))
            .next()
            .map_or(Some(1.0), |q| q.parse::<f64>().ok());
        let Some(quality) = quality else { continue };
        if quality > best.0 {
            best = (quality, mime_type(kind, subtype).unwrap_or(JSON));
        }
    }
    best.1
}

/// Kong's `get_mime_type` without its default: `*/*` is JSON, `type/*` the type's, else exact.
fn mime_type(kind: &str, subtype: &str) -> Option<&'static str> {
    match (kind, subtype) {
        ("*", "*") | ("application", "*") | ("application", "json") => Some(JSON),
        ("text", "*") | ("text", "plain") => Some("text/plain; charset=utf-8"),
        ("text", "html") => Some("text/html; charset=utf-8"),
        ("application", "xml") => Some("application/xml; charset=utf-8"),
        ("application", "grpc") => Some(""),
        _ => None,
    }
}

/// Kong's `get_error_template`: by the bare media type or Kong's full MIME type.
fn error_template(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "application/json" | JSON => "{\n  \"message\":\"%s\",\n  \"request_id\":\"%s\"\n}",
        "text/html" | "text/html; charset=utf-8" => {
            "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n"
        }
        "application/xml" | "application/xml; charset=utf-8" => {
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n"
        }
        "text/plain" | "text/plain; charset=utf-8" => "%s\nrequest_id: %s\n",
        _ => return None,
    })
}

/// `kong.service.request.set_body(args, mimetype?)` (service/request.lua, `set_body`): `args`
/// encoded for the content type (the argument, else the request's `Content-Type`), set as the
/// raw body with that `Content-Type`; true, or nil when there is no content type.
pub(super) fn set_body(kong: &mut Kong<'_>, args: &[Value]) -> Result<Value> {
    const METHOD: &str = "kong.service.request.set_body";
    let fields: &[(Value, Value)] = match arg(args, 0) {
        Value::Map(fields) => fields,
        Value::Array(empty) if empty.is_empty() => &[],
        _ => return Err(invalid_call(format!("{METHOD}: args must be a table"))),
    };
    let mime = match arg(args, 1) {
        Value::Nil => kong.call("kong.request.get_header", &[Value::from("Content-Type")])?,
        mime @ Value::String(_) => mime.clone(),
        _ => return Err(invalid_call(format!("{METHOD}: mime must be a string"))),
    };
    let Some(mime) = convert::text(&mime) else {
        return Ok(Value::Nil);
    };
    let fail = |why: String| invalid_call(format!("{METHOD}: {why}"));
    // Kong looks the media type up as it is written: not lower-cased, not trimmed.
    let (body, content_type) = match mime.split(';').next().unwrap_or_default() {
        "application/x-www-form-urlencoded" => (ordered_args(fields).map_err(fail)?, mime),
        "application/json" => (convert::cjson_encode(arg(args, 0)).map_err(fail)?, mime),
        "multipart/form-data" => multipart(fields, &mime).map_err(fail)?,
        _ => return Err(fail(format!("unsupported content type {mime}"))),
    };
    kong.call("kong.service.request.set_raw_body", &[Value::from(body)])?;
    kong.call(
        "kong.service.request.set_header",
        &[Value::from("Content-Type"), Value::from(content_type)],
    )?;
    Ok(Value::from(true))
}

/// The characters `ngx.encode_args` leaves as they are (`NGX_ESCAPE_URI_COMPONENT`).
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `make_ordered_args`: each argument as `ngx.encode_args` writes it alone (`true` is a bare
/// name, `false` nothing, an array one pair per element), sorted, joined by `&`.
fn ordered_args(fields: &[(Value, Value)]) -> std::result::Result<String, String> {
    let escape =
        |text: &str| percent_encoding::utf8_percent_encode(text, URI_COMPONENT).to_string();
    let mut encoded = Vec::with_capacity(fields.len());
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_nil()) {
        let name = match name {
            Value::String(_) => escape(&convert::text(name).unwrap_or_default()),
            _ => return Err("arg keys must be strings".into()),
        };
        let values = match value {
            Value::Array(values) => values.as_slice(),
            single => std::slice::from_ref(single),
        };
        let mut pairs = Vec::new();
        for value in values {
            match value {
                Value::Boolean(true) => pairs.push(name.clone()),
                Value::Boolean(false) => {}
                other => pairs.push(format!("{name}={}", escape(&lua_tostring(other)?))),
            }
        }
        encoded.push(pairs.join("&"));
    }
    encoded.sort();
    Ok(encoded.join("&"))
}

/// Lua's `tostring` of a string, number or boolean.
fn lua_tostring(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::String(_) | Value::Binary(_) => Ok(convert::text(value).unwrap_or_default()),
        Value::Boolean(flag) => Ok(flag.to_string()),
        number @ (Value::Integer(_) | Value::F32(_) | Value::F64(_)) => {
            convert::cjson_encode(number)
        }
        other => Err(format!("value {other}: expected string, number or boolean")),
    }
}

/// The multipart handler: the boundary from `mime` (else a random one, as Kong's), the fields
/// in name order.
fn multipart(
    fields: &[(Value, Value)],
    mime: &str,
) -> std::result::Result<(String, String), String> {
    let mut parts = Vec::with_capacity(fields.len());
    for (name, value) in fields.iter().filter(|(_, value)| !value.is_nil()) {
        let Value::String(_) = name else {
            return Err(format!("invalid key {name}: expected string"));
        };
        parts.push((
            convert::text(name).unwrap_or_default(),
            lua_tostring(value)?,
        ));
    }
    parts.sort();
    let given = mime.find("boundary=").map(|at| {
        let rest = &mime[at + "boundary=".len()..];
        match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default().to_string(),
            None => rest.to_string(),
        }
    });
    let clashes = |boundary: &str| {
        let check = format!("\n--{boundary}");
        parts.iter().any(|(_, value)| value.contains(&check))
    };
    let mut boundary = given.unwrap_or_else(random_boundary);
    while clashes(&boundary) {
        boundary = random_boundary();
    }
    let mut body = String::new();
    for (name, value) in &parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Ok((body, format!("multipart/form-data; boundary={boundary}")))
}

/// `tostring(math.random(1e10))`.
fn random_boundary() -> String {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::SystemTime::now()) % 10_000_000_000 + 1).to_string()
}
