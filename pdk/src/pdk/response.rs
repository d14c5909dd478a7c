use super::{value, Bridge, Headers};
use crate::{Error, ErrorKind, Result};
use rmpv::Value;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// `kong.response`: the response Kong sends to the client.
#[derive(Clone, Copy)]
pub struct Response<'a> {
    bridge: Bridge<'a>,
}

/// Where the client response comes from (`kong.response.get_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Proxied from the service.
    Service,
    /// Produced by `kong.response.exit` or `kong.response.error` (also the 500 the host sends
    /// for a failed handler).
    Exit,
    /// Produced by Kong after an error (a PDK call Kong raised on, a failed connection to the
    /// service).
    Error,
}

impl Source {
    /// Kong's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Service => "service",
            Source::Exit => "exit",
            Source::Error => "error",
        }
    }
}

impl<'a> Response<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Response { bridge }
    }

    /// The status code Kong is sending (or sent, in the log phase). Phases: response, log.
    pub fn get_status(&self) -> Result<u16> {
        self.bridge
            .call_as("kong.response.get_status", vec![], value::u16_integer)
    }

    /// First value of response header `name` (case-insensitive), `None` when absent.
    /// Phases: response, log.
    pub fn get_header(&self, name: &str) -> Result<Option<String>> {
        self.bridge.header("kong.response.get_header", name)
    }

    /// Every response header, lower-case names; at most `max_headers` (Kong's default: 100).
    /// Phases: response, log.
    pub fn get_headers(&self, max_headers: Option<u32>) -> Result<Headers> {
        self.bridge
            .headers("kong.response.get_headers", max_headers)
    }

    /// Whether the response came from the service, an exit, or an error. Phases: response,
    /// log.
    pub fn get_source(&self) -> Result<Source> {
        self.bridge
            .call_as("kong.response.get_source", vec![], value::decode)
    }

    /// Sets the status sent to the client. Before proxying, the service's status wins.
    /// Phases: rewrite, access, response.
    pub fn set_status(&self, status: u16) -> Result<()> {
        self.bridge
            .call_unit("kong.response.set_status", vec![Value::from(status)])
    }

    /// Sets response header `name`, replacing any value it had (set before proxying, it
    /// overrides the service's). Phases: rewrite, access, response.
    ///
    /// Reaches Kong with the header writes around it: consecutive writes are held and sent as
    /// one `kong.response.set_headers` before the handler's next other PDK call, before
    /// [`exit`](Response::exit), or when the handler returns (also with `Err`). Not held, so
    /// sent at once: writes in other phases (Kong refuses them there) and names with `_` (nginx
    /// spells them with `-`, so two spellings name one header).
    pub fn set_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.response.set_header",
            vec![Value::from(name), Value::from(value)],
        )
    }

    /// Adds a value to response header `name`, keeping the ones it had.
    /// Phases: rewrite, access, response.
    ///
    /// Sent at once (after any held [`set_header`](Response::set_header)s): nginx adds to the
    /// response's current values, which only Kong knows.
    pub fn add_header(&self, name: &str, value: &str) -> Result<()> {
        self.bridge.call_unit(
            "kong.response.add_header",
            vec![Value::from(name), Value::from(value)],
        )
    }

    /// Removes response header `name`. Phases: rewrite, access, response.
    pub fn clear_header(&self, name: &str) -> Result<()> {
        self.bridge
            .call_unit("kong.response.clear_header", vec![Value::from(name)])
    }

    /// Sets each header of `headers` (with all its values), replacing the values they had;
    /// other headers are kept. Phases: rewrite, access, response.
    pub fn set_headers(&self, headers: &Headers) -> Result<()> {
        self.bridge.call_unit(
            "kong.response.set_headers",
            vec![value::multi_map_value(headers)],
        )
    }

    /// Ends the request: Kong answers the client with `status`, `body` and `headers`, and the
    /// plugin's phase is over. Any PDK call after it fails with
    /// [`ErrorKind::EventEnded`](crate::ErrorKind::EventEnded): return from the handler.
    /// Phases: rewrite, access, response, preread (stream: status 200, 400, 403, 500, 502 or
    /// 503 only).
    ///
    /// Returns an [`Exit`] to return from the handler: `return kong.response.exit(…).into();`.
    /// It is `#[must_use]` and not a `Result`, so `kong.response.exit(…)?;` followed by more
    /// code does not compile, and a dropped one is a warning.
    pub fn exit(&self, status: u16, body: impl AsRef<[u8]>, headers: Option<&Headers>) -> Exit {
        // Never leave a nil hole in Args (protocol.md §6.3): the body is always sent, even empty.
        Exit(self.exit_with(status, value::bytes_value(body.as_ref()), headers))
    }

    /// [`exit`](Response::exit) with a body Kong encodes as JSON and sends as
    /// `application/json`: `body` must serialize to a map or a list.
    pub fn exit_json<T: Serialize + ?Sized>(
        &self,
        status: u16,
        body: &T,
        headers: Option<&Headers>,
    ) -> Exit {
        Exit(
            value::encode("kong.response.exit", body)
                .and_then(|body| self.exit_with(status, body, headers)),
        )
    }

    fn exit_with(&self, status: u16, body: Value, headers: Option<&Headers>) -> Result<()> {
        check_status("kong.response.exit", status, 100..=599)?;
        let mut args = vec![Value::from(status), body];
        args.extend(headers.map(value::multi_map_value));
        self.bridge.call_unit("kong.response.exit", args)
    }

    /// Ends the request with an error: `status` (400–599) and `message` (Kong's default for the
    /// status when `None`) in Kong's error body, formatted as the client's `Accept` header or a
    /// `Content-Type` in `headers` asks (JSON, HTML, XML or text). Terminal like
    /// [`exit`](Response::exit): later PDK calls fail with
    /// [`ErrorKind::EventEnded`](crate::ErrorKind::EventEnded). Phases: rewrite, access,
    /// response.
    pub fn error(&self, status: u16, message: Option<&str>, headers: Option<&Headers>) -> Exit {
        Exit(self.error_with(status, message, headers))
    }

    fn error_with(
        &self,
        status: u16,
        message: Option<&str>,
        headers: Option<&Headers>,
    ) -> Result<()> {
        check_status("kong.response.error", status, 400..=599)?;
        let args = value::with_optional(
            vec![Value::from(status)],
            vec![
                (
                    message.map(Value::from),
                    Value::from(default_error_message(status)),
                ),
                (headers.map(value::multi_map_value), Value::Nil),
            ],
        );
        self.bridge.call_unit("kong.response.error", args)
    }
}

/// What [`Response::exit`], [`exit_json`](Response::exit_json) and [`error`](Response::error)
/// return: the request is answered and the phase's event is over, so nothing should run after
/// it. Return it from the handler:
///
/// ```
/// use kong_rust_pdk::prelude::*;
///
/// fn access(kong: &Kong) -> Result<()> {
///     if kong.request.get_header("x-api-key")?.is_none() {
///         return kong.response.exit(401, "no key", None).into();
///     }
///     kong.service.request.set_header("x-checked", "yes")
/// }
/// # fn main() {}
/// ```
///
/// Not a `Result`, so `kong.response.exit(…)?;` followed by more code does not compile:
///
/// ```compile_fail,E0277
/// # use kong_rust_pdk::prelude::*;
/// fn access(kong: &Kong) -> Result<()> {
///     kong.response.exit(401, "no key", None)?;
///     kong.service.request.set_header("x-checked", "yes") // would fail: the event is over
/// }
/// # fn main() {}
/// ```
///
/// Unused, it is a warning. [`into_result`](Exit::into_result) gives the call's own outcome (a status
/// out of range is refused before anything is sent).
#[must_use = "the request is answered and nothing should run after it: \
              `return kong.response.exit(…).into();`"]
#[derive(Debug)]
pub struct Exit(Result<()>);

impl Exit {
    /// Whether the call went out: `Err` for a status Kong would refuse or a call that failed.
    pub fn into_result(self) -> Result<()> {
        self.0
    }
}

impl From<Exit> for Result<()> {
    fn from(exit: Exit) -> Self {
        exit.0
    }
}

/// Kong's own check, made here: Kong never answers a terminal call, so its error would reach
/// only Kong's log, not the plugin.
fn check_status(method: &str, status: u16, range: RangeInclusive<u16>) -> Result<()> {
    if range.contains(&status) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidCall,
        format!(
            "{method}: status {status} is not between {} and {}",
            range.start(),
            range.end()
        ),
    ))
}

/// Kong's message for an error status when `kong.response.error` gets none.
pub fn default_error_message(status: u16) -> String {
    crate::abi::kong_error_message(status)
}
