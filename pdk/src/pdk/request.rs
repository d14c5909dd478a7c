use super::{value, Bridge, Headers, MultiMap};
use crate::Result;
use rmpv::Value;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// `kong.request`: the client's request as Kong received it (with what
/// `kong.service.request` changed in it since).
///
/// Unless said otherwise a method works in the rewrite, access and response phases; the log
/// phase has only a snapshot of the request, taken when the response was sent.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    bridge: Bridge<'a>,
}

/// One query argument (`kong.request.get_query_arg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryArg {
    /// Present without `=` (`?debug`).
    Flag,
    /// `?name=value` (possibly empty).
    Value(String),
}

/// The router's regex captures of the request path (`kong.request.get_uri_captures`).
/// A group that took no part in the match is `None` (Lua's `false`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UriCaptures {
    /// Group 1, 2, … (not the whole match).
    pub unnamed: Vec<Option<String>>,
    /// `(?<name>…)` groups.
    pub named: BTreeMap<String, Option<String>>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Request { bridge }
    }

    /// `http` or `https`, lower case.
    pub fn get_scheme(&self) -> Result<String> {
        self.bridge.text("kong.request.get_scheme")
    }

    /// The host the client asked for, lower case.
    pub fn get_host(&self) -> Result<String> {
        self.bridge.text("kong.request.get_host")
    }

    /// The port the client connected to. Phases: certificate, rewrite, access, response.
    pub fn get_port(&self) -> Result<u16> {
        self.bridge
            .call_as("kong.request.get_port", vec![], value::u16_integer)
    }

    /// The scheme, from `X-Forwarded-Proto` when the client is trusted.
    pub fn get_forwarded_scheme(&self) -> Result<String> {
        self.bridge.text("kong.request.get_forwarded_scheme")
    }

    /// The host, from `X-Forwarded-Host` when the client is trusted.
    pub fn get_forwarded_host(&self) -> Result<String> {
        self.bridge.text("kong.request.get_forwarded_host")
    }

    /// The path, from `X-Forwarded-Path` when the client is trusted.
    pub fn get_forwarded_path(&self) -> Result<String> {
        self.bridge.text("kong.request.get_forwarded_path")
    }

    /// `X-Forwarded-Prefix` from a trusted client, `None` without one.
    pub fn get_forwarded_prefix(&self) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.request.get_forwarded_prefix",
            vec![],
            value::optional_string,
        )
    }

    /// The port, from `X-Forwarded-Port` when the client is trusted.
    pub fn get_forwarded_port(&self) -> Result<u16> {
        self.bridge.call_as(
            "kong.request.get_forwarded_port",
            vec![],
            value::u16_integer,
        )
    }

    /// `1.0`, `1.1`, `2.0`…; `None` for a request that is not HTTP.
    pub fn get_http_version(&self) -> Result<Option<f64>> {
        self.bridge.call_as(
            "kong.request.get_http_version",
            vec![],
            value::optional_number,
        )
    }

    /// `GET`, `POST`, …
    pub fn get_method(&self) -> Result<String> {
        self.bridge.text("kong.request.get_method")
    }

    /// The normalized path, without the query string.
    pub fn get_path(&self) -> Result<String> {
        self.bridge.text("kong.request.get_path")
    }

    /// The path as the client sent it, not normalized, without the query string.
    pub fn get_raw_path(&self) -> Result<String> {
        self.bridge.text("kong.request.get_raw_path")
    }

    /// The path and, when there is one, `?` and the query string, as the client sent them.
    pub fn get_path_with_query(&self) -> Result<String> {
        self.bridge.text("kong.request.get_path_with_query")
    }

    /// The query string without `?`; empty when there is none.
    pub fn get_raw_query(&self) -> Result<String> {
        self.bridge.text("kong.request.get_raw_query")
    }

    /// Query argument `name` (the first one when repeated), `None` when absent.
    pub fn get_query_arg(&self, name: &str) -> Result<Option<QueryArg>> {
        self.bridge.call_as(
            "kong.request.get_query_arg",
            vec![Value::from(name)],
            query_arg,
        )
    }

    /// Every query argument with all its values; a flag (`?debug`) has none. At most
    /// `max_args` arguments (Kong's default: 100).
    pub fn get_query(&self, max_args: Option<u32>) -> Result<MultiMap> {
        let args = max_args.map(Value::from).into_iter().collect();
        self.bridge
            .call_as("kong.request.get_query", args, value::multi_map)
    }

    /// First value of header `name` (case-insensitive), `None` when the request lacks it.
    /// Phases: rewrite, access, response, log.
    pub fn get_header(&self, name: &str) -> Result<Option<String>> {
        self.bridge.header("kong.request.get_header", name)
    }

    /// Every header, lower-case names; at most `max_headers` (Kong's default: 100).
    /// Phases: rewrite, access, response, log.
    pub fn get_headers(&self, max_headers: Option<u32>) -> Result<Headers> {
        self.bridge.headers("kong.request.get_headers", max_headers)
    }

    /// Several headers in one round trip: the first value of each of `names` (case-insensitive),
    /// `None` for one the request lacks; what [`get_header`](Request::get_header) gives for
    /// each, for one `kong.request.get_headers(1000)` instead of a round trip per name:
    ///
    /// ```
    /// # use kong_rust_pdk::prelude::*;
    /// fn access(kong: &Kong) -> Result<()> {
    ///     let [key, authorization] = kong.request.get_headers_named(["apikey", "authorization"])?;
    ///     # let _ = (key, authorization);
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// It reads the first 1000 header lines (Kong's maximum): only a request with more could
    /// hold a header `get_header` finds and this does not. Phases: rewrite, access, response,
    /// log.
    pub fn get_headers_named<const N: usize>(
        &self,
        names: [&str; N],
    ) -> Result<[Option<String>; N]> {
        /// Kong's `MAX_HEADERS` for `kong.request.get_headers`.
        const MAX_HEADERS: u32 = 1000;
        let headers = self.get_headers(Some(MAX_HEADERS))?;
        Ok(names.map(|name| headers.get(name).map(str::to_string)))
    }

    /// The body's bytes, empty when there is none. A body nginx buffered to a file is read only
    /// when it is at most `max_allowed_file_size` bytes; otherwise Kong fails the call.
    pub fn get_raw_body(&self, max_allowed_file_size: Option<u64>) -> Result<Vec<u8>> {
        let args = max_allowed_file_size.map(Value::from).into_iter().collect();
        self.bridge
            .call_as("kong.request.get_raw_body", args, value::bytes)
    }

    /// The body decoded by Kong as `mimetype` (default: the request's `Content-Type`): JSON,
    /// form-urlencoded or multipart, into `T`. `None` when Kong cannot decode it (no or
    /// unknown content type, invalid body). `max_args` (default 100) bounds form arguments.
    pub fn get_body<T: DeserializeOwned>(
        &self,
        mimetype: Option<&str>,
        max_args: Option<u32>,
        max_allowed_file_size: Option<u64>,
    ) -> Result<Option<T>> {
        self.bridge.body(
            ("kong.request.get_body", "kong.request.get_header"),
            mimetype,
            vec![
                (max_args.map(Value::from), Value::from(100)),
                (max_allowed_file_size.map(Value::from), Value::Nil),
            ],
        )
    }

    /// When Kong started processing the request: milliseconds since the epoch.
    pub fn get_start_time(&self) -> Result<u64> {
        self.bridge
            .call_as("kong.request.get_start_time", vec![], |time| {
                value::number(time).map(|ms| ms.round() as u64)
            })
    }

    /// The router's regex captures of the path. Phases: rewrite, access, response, log.
    pub fn get_uri_captures(&self) -> Result<UriCaptures> {
        self.bridge
            .call_as("kong.request.get_uri_captures", vec![], uri_captures)
    }
}

/// A string, `true` for a flag, or (for a repeated argument, as some Kong versions report
/// it) an array whose first element counts.
fn query_arg(value: Value) -> Result<Option<QueryArg>, String> {
    match value {
        Value::Nil => Ok(None),
        Value::Boolean(true) => Ok(Some(QueryArg::Flag)),
        Value::Array(items) => match items.into_iter().next() {
            Some(first) => query_arg(first),
            None => Ok(Some(QueryArg::Flag)),
        },
        other => value::text(&other)
            .map(|text| Some(QueryArg::Value(text)))
            .ok_or_else(|| format!("{other} where a query argument was expected")),
    }
}

/// `{"unnamed": [...], "named": {...}}`; either part may arrive as an empty array, `unnamed` as
/// a map with integer keys when it has holes; a capture is text, or `false` for a group that did
/// not take part.
fn uri_captures(value: Value) -> Result<UriCaptures, String> {
    let mut captures = UriCaptures::default();
    let Value::Map(parts) = value else {
        return Err(format!("{value} where the URI captures map was expected"));
    };
    for (part, entries) in parts {
        let entries = match entries {
            Value::Map(entries) => entries,
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (Value::from(i + 1), item))
                .collect(),
            _ => Vec::new(),
        };
        match part.as_str() {
            Some("unnamed") => {
                let mut groups: Vec<(u64, Option<String>)> = entries
                    .iter()
                    .filter_map(|(i, c)| Some((i.as_u64().filter(|i| *i >= 1)?, value::text(c))))
                    .collect();
                groups.sort_by_key(|(i, _)| *i);
                let len = groups.last().map_or(0, |(i, _)| *i as usize);
                captures.unnamed = vec![None; len];
                for (i, c) in groups {
                    captures.unnamed[i as usize - 1] = c;
                }
            }
            Some("named") => {
                captures.named = entries
                    .iter()
                    .filter_map(|(name, c)| Some((value::text(name)?, value::text(c))))
                    .collect();
            }
            _ => {}
        }
    }
    Ok(captures)
}
