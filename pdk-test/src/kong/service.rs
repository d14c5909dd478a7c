//! `kong.router.*`, `kong.service.*`, `kong.service.request.*` and `kong.service.response.*`.

use super::{body_of, content_type, header_of, headers_of, optional, Answer, Args};
use crate::{http, lua, state::State};
use rmpv::Value;

pub(super) fn get_route(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.route.clone()))
}

pub(super) fn get_service(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.service.clone()))
}

/// `true` for an upstream entity the request builder declared; absent for an unknown one.
pub(super) fn set_upstream(s: &mut State, a: &Args) -> Answer {
    let host = a.string(0, "host")?;
    if !s.req.upstreams.contains(&host) {
        return Ok(Value::Nil);
    }
    s.upstream.upstream = Some(host);
    s.upstream.target = None;
    Ok(Value::Boolean(true))
}

pub(super) fn set_target(s: &mut State, a: &Args) -> Answer {
    let host = a.string(0, "host")?;
    let port = a.integer(1, "port", 0..=65535)?;
    s.upstream.target = Some((host, port as u16));
    Ok(Value::Nil)
}

pub(super) fn set_retries(s: &mut State, a: &Args) -> Answer {
    s.upstream.retries = a.integer(0, "retries", 0..=32767)?;
    Ok(Value::Nil)
}

pub(super) fn set_timeouts(s: &mut State, a: &Args) -> Answer {
    let names = ["connect_timeout", "write_timeout", "read_timeout"];
    for (i, name) in names.into_iter().enumerate() {
        s.upstream.timeouts[i] = a.integer(i, name, 1..=2_147_483_646)?;
    }
    Ok(Value::Nil)
}

pub(super) fn set_tls_verify(s: &mut State, a: &Args) -> Answer {
    match a.get(0) {
        Value::Boolean(on) => {
            s.upstream.tls_verify = Some(*on);
            Ok(Value::Boolean(true))
        }
        _ => Err("argument must be a boolean".into()),
    }
}

pub(super) fn set_tls_verify_depth(s: &mut State, a: &Args) -> Answer {
    s.upstream.tls_verify_depth = Some(a.integer(0, "depth", 0..=i64::from(i32::MAX))?);
    Ok(Value::Boolean(true))
}

pub(super) fn enable_buffering(s: &mut State, _: &Args) -> Answer {
    s.buffer();
    Ok(Value::Nil)
}

pub(super) fn set_scheme(s: &mut State, a: &Args) -> Answer {
    let scheme = a.string(0, "scheme")?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("invalid scheme: {scheme}"));
    }
    s.upstream.scheme = scheme;
    Ok(Value::Nil)
}

pub(super) fn set_path(s: &mut State, a: &Args) -> Answer {
    let path = a.string(0, "path")?;
    if !path.starts_with('/') {
        return Err("path must start with /".into());
    }
    s.upstream.path = http::escape_path(&path);
    Ok(Value::Nil)
}

/// The query is the request's (`kong.request.get_query` sees the change too).
pub(super) fn set_raw_query(s: &mut State, a: &Args) -> Answer {
    s.query = a.string(0, "query")?;
    Ok(Value::Nil)
}

const METHODS: [&str; 15] = [
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "MKCOL",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
    "TRACE",
];

pub(super) fn set_method(s: &mut State, a: &Args) -> Answer {
    let method = a.string(0, "method")?;
    if !METHODS.contains(&method.as_str()) {
        return Err(format!("invalid method: {method}"));
    }
    s.method = method;
    Ok(Value::Nil)
}

pub(super) fn set_query(s: &mut State, a: &Args) -> Answer {
    let args = a.get(0);
    if !lua::is_table(args) {
        return Err("args must be a table".into());
    }
    s.query = http::encode_args(args)?;
    Ok(Value::Nil)
}

pub(super) fn clear_query_arg(s: &mut State, a: &Args) -> Answer {
    let name = a.string(0, "query argument name")?;
    s.query = http::remove_arg(&s.query, &name);
    Ok(Value::Nil)
}

/// A request header change; for `host` it is also the `Host` sent upstream.
fn change_header(s: &mut State, name: &str, values: Vec<String>, add: bool) {
    if name.eq_ignore_ascii_case("host") {
        s.upstream.host_header = values.last().cloned();
    }
    if add {
        http::add_header(&mut s.headers, name, values);
    } else {
        http::set_header(&mut s.headers, name, values);
    }
}

pub(super) fn set_header(s: &mut State, a: &Args) -> Answer {
    let (name, values) = a.header(0)?;
    change_header(s, &name, values, false);
    Ok(Value::Nil)
}

pub(super) fn add_header(s: &mut State, a: &Args) -> Answer {
    let (name, values) = a.header(0)?;
    change_header(s, &name, values, true);
    Ok(Value::Nil)
}

pub(super) fn clear_header(s: &mut State, a: &Args) -> Answer {
    let name = a.string(0, "header")?;
    http::clear_header(&mut s.headers, &name);
    Ok(Value::Nil)
}

pub(super) fn set_headers(s: &mut State, a: &Args) -> Answer {
    for (name, values) in a.headers(0)? {
        change_header(s, &name, values, false);
    }
    Ok(Value::Nil)
}

/// The new body; nginx updates `Content-Length` to match.
fn replace_body(s: &mut State, body: Vec<u8>) {
    http::set_header(
        &mut s.headers,
        "content-length",
        vec![body.len().to_string()],
    );
    s.body = body;
}

pub(super) fn set_raw_body(s: &mut State, a: &Args) -> Answer {
    let body = lua::as_bytes(a.get(0)).ok_or("body must be a string")?;
    replace_body(s, body.to_vec());
    Ok(Value::Nil)
}

/// `args` encoded by `mimetype` (default: the request's `Content-Type`); `true`, or absent when
/// there is no content type at all.
pub(super) fn set_body(s: &mut State, a: &Args) -> Answer {
    let args = a.get(0);
    if !lua::is_table(args) {
        return Err("args must be a table".into());
    }
    let Some(mime) = content_type(a, 1, "mime", &s.headers)? else {
        return Ok(Value::Nil);
    };
    let (body, content_type) = http::encode_body(args, &mime)?;
    replace_body(s, body);
    http::set_header(&mut s.headers, "content-type", vec![content_type]);
    Ok(Value::Boolean(true))
}

pub(super) fn response_status(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.service_response.status))
}

pub(super) fn response_header(s: &mut State, a: &Args) -> Answer {
    header_of(a, &s.service_response.headers)
}

pub(super) fn response_headers(s: &mut State, a: &Args) -> Answer {
    headers_of(a, &s.service_response.headers)
}

/// The service's body as `bin` (the response phase proxies buffered, so it is available).
pub(super) fn response_raw_body(s: &mut State, _: &Args) -> Answer {
    Ok(Value::Binary(s.service_response.body.clone()))
}

pub(super) fn response_body(s: &mut State, a: &Args) -> Answer {
    body_of(a, &s.service_response.headers, &s.service_response.body)
}
