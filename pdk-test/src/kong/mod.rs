//! The in-memory Kong: runs every PDK function of the catalogue (protocol.md §11) against the
//! request [`State`], with Kong's phase rules, its argument checks and its result encoding.

mod catalogue;

pub(crate) use catalogue::usable_names;
mod client;
mod request;
mod response;
mod service;
mod support;

use super::{http, lua, outcome::PdkCall, state::State};
use kong_rust_pdk::pdk::Headers;
use kong_rust_pdk::{pdk::Call, Error, ErrorKind, Result};
use rmpv::Value;
use std::{cell::RefCell, ops::RangeInclusive};

/// A [`Call`] implementation that is Kong for one request.
pub(crate) struct MockKong {
    state: RefCell<State>,
}

impl MockKong {
    pub(crate) fn new(state: State) -> Self {
        MockKong {
            state: RefCell::new(state),
        }
    }

    /// Works on the request between phases (never while a handler runs).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.borrow_mut())
    }

    pub(crate) fn into_state(self) -> State {
        self.state.into_inner()
    }
}

impl Call for MockKong {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let mut state = self.state.borrow_mut();
        let (args, result) = match rmpv::decode::read_value(&mut &args[..]) {
            Ok(Value::Array(args)) => {
                let result = dispatch(&mut state, method, &args);
                (args, result)
            }
            _ => (
                Vec::new(),
                Err(Error::new(
                    ErrorKind::InvalidCall,
                    format!("{method}: arguments must be one MessagePack array"),
                )),
            ),
        };
        let (plugin, phase) = (state.plugin, state.phase);
        state.calls.push(PdkCall {
            plugin,
            phase,
            method: method.to_string(),
            args,
            result: result.clone(),
        });
        result.map(|value| lua::encode(&value))
    }
}

/// Kong never answers these: the request is over once they ran.
const TERMINAL: [&str; 2] = ["kong.response.exit", "kong.response.error"];

fn dispatch(state: &mut State, method: &str, args: &[Value]) -> Result<Value> {
    if let Some(reason) = &state.ended {
        return Err(Error::new(
            ErrorKind::EventEnded,
            format!("{method}: {reason}"),
        ));
    }
    let Some(function) = catalogue::find(method) else {
        return Err(Error::new(
            ErrorKind::InvalidCall,
            format!(
                "{method}: not a PDK function of Kong's catalogue (docs/protocol.md §11); Kong \
                 would log `could not find pdk method: {method}` and answer nothing"
            ),
        ));
    };
    let result = function
        .phases
        .check(state.phase)
        .and_then(|()| (function.run)(state, &Args(args)));
    match result {
        Ok(value) => {
            if TERMINAL.contains(&method) {
                state.ended = Some(format!("the request was already ended by {method}"));
            }
            Ok(value)
        }
        Err(message) => Err(state.raised(method, message)),
    }
}

/// What a PDK function returns: its first result, or the message of the Lua error it raises.
type Answer = std::result::Result<Value, String>;

/// A call's positional arguments, read with Kong's checks (and its error wording).
pub(crate) struct Args<'a>(&'a [Value]);

static NIL: Value = Value::Nil;

impl<'a> Args<'a> {
    fn get(&self, i: usize) -> &'a Value {
        self.0.get(i).unwrap_or(&NIL)
    }

    fn string(&self, i: usize, what: &str) -> std::result::Result<String, String> {
        self.opt_string(i, what)?
            .ok_or_else(|| format!("{what} must be a string"))
    }

    fn opt_string(&self, i: usize, what: &str) -> std::result::Result<Option<String>, String> {
        match self.get(i) {
            Value::Nil => Ok(None),
            value => lua::as_text(value)
                .map(Some)
                .ok_or_else(|| format!("{what} must be a string")),
        }
    }

    fn opt_number(&self, i: usize, what: &str) -> std::result::Result<Option<f64>, String> {
        match self.get(i) {
            Value::Nil => Ok(None),
            value => lua::as_number(value)
                .map(Some)
                .ok_or_else(|| format!("{what} must be a number")),
        }
    }

    /// An integer in `range`, with Kong's two messages.
    fn integer(
        &self,
        i: usize,
        what: &str,
        range: RangeInclusive<i64>,
    ) -> std::result::Result<i64, String> {
        let n = lua::as_number(self.get(i))
            .filter(|n| n.fract() == 0.0)
            .ok_or_else(|| format!("{what} must be an integer"))? as i64;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "{what} must be an integer between {} and {}",
                range.start(),
                range.end()
            ))
        }
    }

    /// A status code: a number within `range`, or Kong's `code must be …` errors.
    fn status(&self, i: usize, range: RangeInclusive<u16>) -> std::result::Result<u16, String> {
        let code = lua::as_number(self.get(i)).ok_or("code must be a number")?;
        if code < f64::from(*range.start()) || code > f64::from(*range.end()) {
            return Err(format!(
                "code must be a number between {} and {}",
                range.start(),
                range.end()
            ));
        }
        Ok(code as u16)
    }

    fn truthy(&self, i: usize) -> bool {
        !matches!(self.get(i), Value::Nil | Value::Boolean(false))
    }

    /// A `max_headers`/`max_args` argument: `default` when absent, else within 1..=`max`.
    fn limit(
        &self,
        i: usize,
        what: &str,
        default: usize,
        max: usize,
    ) -> std::result::Result<usize, String> {
        match self.opt_number(i, what)? {
            None => Ok(default),
            Some(n) if n < 1.0 => Err(format!("{what} must be >= 1")),
            Some(n) if n > max as f64 => Err(format!("{what} must be <= {max}")),
            Some(n) => Ok(n as usize),
        }
    }

    /// A header name and value as `validate_header` accepts them: a string name; a string,
    /// number or boolean value, or an array of those. The values come back as strings.
    fn header(&self, i: usize) -> std::result::Result<(String, Vec<String>), String> {
        header_entry(self.get(i), self.get(i + 1))
    }

    /// A table of headers as `validate_headers` accepts it.
    fn headers(&self, i: usize) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
        headers_table(self.get(i))
    }
}

fn header_entry(name: &Value, value: &Value) -> std::result::Result<(String, Vec<String>), String> {
    let Some(name) = lua::as_text(name) else {
        return Err(format!(
            "invalid header name \"{}\": got {}, expected string",
            lua::tostring(name),
            lua::type_name(name)
        ));
    };
    let invalid = |got: &Value| {
        format!(
            "invalid header value for \"{name}\": got {}, expected array of string, string, number or boolean",
            lua::type_name(got)
        )
    };
    let scalar = |value: &Value| match value {
        Value::Nil | Value::Ext(..) | Value::Array(_) | Value::Map(_) => Err(invalid(value)),
        other => Ok(lua::tostring(other)),
    };
    let values = match value {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<std::result::Result<_, _>>()?,
        single => vec![scalar(single)?],
    };
    Ok((name, values))
}

fn headers_table(table: &Value) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    if !lua::is_table(table) {
        return Err("headers must be a table".into());
    }
    lua::entries(table)
        .iter()
        .map(|(name, value)| header_entry(name, value))
        .collect()
}

/// An optional result: absent (`nil`) when there is none.
fn optional<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Nil, Into::into)
}

/// Kong's default and maximum for `max_headers`/`max_args`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `get_header` on one of the three header sets (request, response, service response).
fn header_of(a: &Args, headers: &Headers) -> Answer {
    let name = a.string(0, "header name")?;
    Ok(optional(http::first_header(headers, &name)))
}

/// `get_headers` on one of the header sets: at most `max_headers` lines, as a multi-map.
fn headers_of(a: &Args, headers: &Headers) -> Answer {
    let max = a.limit(0, "max_headers", DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(http::multi_map(&http::first_lines(headers, max)))
}

/// The media type argument `i`, else the message's `Content-Type`.
fn content_type(
    a: &Args,
    i: usize,
    what: &str,
    headers: &Headers,
) -> std::result::Result<Option<String>, String> {
    Ok(a.opt_string(i, what)?
        .or_else(|| http::first_header(headers, "content-type").map(str::to_string)))
}

/// `get_body` of a message: decoded by `mimetype` (default: its `Content-Type`); absent when
/// Kong cannot decode it.
fn body_of(a: &Args, headers: &Headers, body: &[u8]) -> Answer {
    let Some(content_type) = content_type(a, 0, "mimetype", headers)? else {
        return Ok(Value::Nil);
    };
    let max = a.limit(1, "max_args", DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(optional(http::decode_body(&content_type, body, max)))
}
