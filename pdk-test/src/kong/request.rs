//! `kong.request.*`: the client request, including what `kong.service.request.*` changed in it
//! (Kong reads both from the same nginx request: a header set for the service is a request
//! header from then on).

use super::{body_of, header_of, headers_of, optional, Answer, Args, DEFAULT_LIMIT, MAX_LIMIT};
use crate::{http, lua, state::State};
use rmpv::Value;

pub(super) fn get_scheme(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.scheme.as_str()))
}

pub(super) fn get_host(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.host.as_str()))
}

pub(super) fn get_port(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.server_port()))
}

pub(super) fn get_forwarded_scheme(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.forwarded_scheme()))
}

pub(super) fn get_forwarded_host(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.forwarded_host()))
}

pub(super) fn get_forwarded_path(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.forwarded_path()))
}

pub(super) fn get_forwarded_prefix(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.req.forwarded.prefix.clone()))
}

pub(super) fn get_forwarded_port(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.forwarded_port()))
}

/// `1.1` as a float, `1` and `2` as integers (protocol.md §11.4).
pub(super) fn get_http_version(s: &mut State, _: &Args) -> Answer {
    Ok(lua::number(s.req.http_version))
}

pub(super) fn get_method(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.method.as_str()))
}

pub(super) fn get_path(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(http::normalize_path(&s.req.path)))
}

pub(super) fn get_raw_path(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.path.as_str()))
}

pub(super) fn get_path_with_query(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.req.request_uri()))
}

pub(super) fn get_raw_query(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.query.as_str()))
}

/// A string, `true` for a flag, an array for a repeated argument, absent when missing.
pub(super) fn get_query_arg(s: &mut State, a: &Args) -> Answer {
    let name = a.string(0, "query argument name")?;
    let args = http::args_table(&http::parse_args(&s.query, DEFAULT_LIMIT));
    Ok(lua::entries(&args)
        .into_iter()
        .find(|(key, _)| key.as_str() == Some(name.as_str()))
        .map_or(Value::Nil, |(_, value)| value))
}

pub(super) fn get_query(s: &mut State, a: &Args) -> Answer {
    let max = a.limit(0, "max_args", DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(http::args_multi_map(&http::parse_args(&s.query, max)))
}

pub(super) fn get_header(s: &mut State, a: &Args) -> Answer {
    header_of(a, &s.headers)
}

pub(super) fn get_headers(s: &mut State, a: &Args) -> Answer {
    headers_of(a, &s.headers)
}

/// The body as `bin` (empty `bin` for none), per the raw-body fix-up of protocol.md §11.1.
pub(super) fn get_raw_body(s: &mut State, _: &Args) -> Answer {
    Ok(Value::Binary(s.body.clone()))
}

pub(super) fn get_body(s: &mut State, a: &Args) -> Answer {
    body_of(a, &s.headers, &s.body)
}

/// Milliseconds since the epoch.
pub(super) fn get_start_time(s: &mut State, _: &Args) -> Answer {
    Ok(lua::number(s.started_at_ms as f64))
}

/// `{"unnamed": [...], "named": {...}}`, empty parts as empty arrays.
pub(super) fn get_uri_captures(s: &mut State, _: &Args) -> Answer {
    let unnamed = s
        .req
        .unnamed_captures
        .iter()
        .map(|c| Value::from(c.as_str()))
        .collect();
    let named: Vec<(Value, Value)> = s
        .req
        .named_captures
        .iter()
        .map(|(name, value)| (Value::from(name.as_str()), Value::from(value.as_str())))
        .collect();
    let named = if named.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Map(named)
    };
    Ok(Value::Map(vec![
        (Value::from("unnamed"), Value::Array(unnamed)),
        (Value::from("named"), named),
    ]))
}
