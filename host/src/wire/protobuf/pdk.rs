//! The PDK over ProtoBuf:1: a plugin's PDK call, encoded as MsgPack:1 would send it, translated
//! to Kong's ProtoBuf method and argument message (`host/proto/pdk.proto`), and Kong's reply
//! translated back to the MessagePack bytes Kong's MsgPack:1 would have carried for that call, so
//! the PDK's typed decoding is the same on both protocols.
//!
//! How Kong serves a call (`kong/runloop/plugin_servers/rpc/pb_rpc.lua`, `call_pdk`): it decodes
//! the argument message, unwraps it into the PDK function's arguments (`pb_unwrap`), calls the
//! function, and wraps its first result into the method's result message (`pb_wrap`). Three
//! consequences shape the translation (see `docs/pdk-protocols.md`):
//!
//! - proto3 cannot tell a default from a missing value: a `nil` result comes back as `""`, `0`,
//!   `false` or an empty message. Where the PDK function can return nil, that default is read
//!   back as nil ([`Reply`]).
//! - Lua numbers travel as doubles inside `google.protobuf.Value`; they are given back in the
//!   format lua-MessagePack picks (integers when integral).
//! - Kong has no error reply: a call that raises ends the connection.
//!
//! Every method our PDK types is in [`METHODS`], one entry each: served natively (the 74 methods
//! of Kong's `.proto`), emulated from those ([`emulated`]), or refused at once.

mod convert;
mod emulated;
#[cfg(test)]
mod tests;

use super::messages as pb;
use convert::{lua_number, lua_string, pb_value_of, value_of_pb};
use kong_rust_abi::{HostError, HostErrorKind};
use prost::Message;
use rmpv::Value;
use std::{collections::HashMap, sync::LazyLock};

/// One ProtoBuf:1 PDK round trip on the event's connection, done by the runtime: writes the
/// method-name frame and the argument frame (`args`: the encoded argument message) the way
/// pb_rpc.lua reads them, and returns Kong's reply frame (the encoded result message), or an
/// error when Kong reports one or the connection fails (the runtime ends the event then).
///
/// For a terminal method (`is_terminal(method)`: `kong.response.exit`) Kong never writes a
/// reply frame: the runtime must not wait for one, and returns an empty reply.
pub(crate) trait RoundTrip {
    fn round_trip(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, HostError>;
}

/// Serves one PDK call a plugin made over ProtoBuf:1. `method` is the PDK's name
/// ("kong.request.get_header"), `args` the MessagePack array the PDK encoded (exactly what
/// MsgPack:1 would send Kong). Translates it to Kong's ProtoBuf method and argument message, does
/// zero, one or several round trips through `kong` (an emulated method such as
/// `kong.response.error` may need more than one), and returns Kong's result as the MessagePack
/// bytes the PDK decodes: the same bytes Kong's MsgPack:1 Step would have carried for that call.
/// A method ProtoBuf:1 cannot serve fails at once, with no round trip, with a HostError whose
/// message names the method, the protocol and the way out (serve that plugin with MsgPack:1).
pub(crate) fn call(
    kong: &mut dyn RoundTrip,
    method: &str,
    args: &[u8],
) -> Result<Vec<u8>, HostError> {
    let mut kong = Kong { link: kong };
    let result = match find(method).map(|entry| entry.how) {
        Some(How::Native(arg, reply)) => {
            kong.native_call(method, arg, reply, &decode_args(method, args)?)?
        }
        Some(How::Emulated(emulate)) => emulate(&mut kong, &decode_args(method, args)?)?,
        None | Some(How::Refused) => return Err(refused(method)),
    };
    let mut bytes = Vec::with_capacity(16);
    convert::write_lua_value(&mut bytes, &result);
    Ok(bytes)
}

/// Whether `method` ends the request (kong.response.exit, kong.response.error): the runtime
/// treats it as terminal, as it does on MsgPack:1.
pub(crate) fn is_terminal(method: &str) -> bool {
    matches!(method, "kong.response.exit" | "kong.response.error")
}

/// How one method is served over ProtoBuf:1.
#[derive(Clone, Copy)]
enum How {
    /// Kong's `.proto` has it, under the same name: the argument message to build from the
    /// MessagePack arguments, and how to read the result message.
    Native(Arg, Reply),
    /// Built from native methods, with Kong's own semantics.
    Emulated(fn(&mut Kong<'_>, &[Value]) -> Result<Value, HostError>),
    /// Not in Kong's `.proto` and not buildable from it.
    Refused,
}

/// The argument message of a native method, built from the MessagePack arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Arg {
    /// `google.protobuf.Empty`: Kong calls the function without arguments.
    None,
    /// `google.protobuf.Empty` for `get_memory_stats(unit?, scale?)`: Kong's MemoryStats holds
    /// numbers, so only the default unit (bytes) can be served.
    BytesUnit,
    /// `String`: the first argument.
    Text,
    /// `Int`: the first argument, or `default` (Kong's own) when it is absent: proto3 would send
    /// 0, which Kong passes on and its PDK rejects.
    Int { default: i32 },
    /// `Bool`: the first argument, false when absent.
    Flag,
    /// `KV`: a key and any value.
    KeyValue,
    /// `google.protobuf.Struct`: the first argument, a map.
    Map,
    /// `google.protobuf.ListValue`: every argument (the log functions).
    List,
    /// `ByteString`: the first argument.
    Bytes,
    /// `ExitArgs`: status, body, headers.
    Exit,
    /// `Target`: host, port.
    Target,
    /// `ConsumerSpec`: id, by_username.
    ConsumerSpec,
    /// `AuthenticateArgs`: consumer, credential.
    Authenticate,
}

/// How a native method's result message becomes the value MsgPack:1 would have carried.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reply {
    /// `google.protobuf.Empty` (or a result the PDK ignores): nil.
    Nothing,
    /// `String`: text.
    Text,
    /// `String` from a function that returns a string or nil: `""` is nil.
    OptionalText,
    /// `Int`: an integer.
    Integer,
    /// `Number`: a Lua number.
    Number,
    /// `Number` from a function that returns a number or nil (`get_http_version`): 0 is nil.
    OptionalNumber,
    /// `Bool`: a boolean.
    Flag,
    /// `Bool` from a function that returns true or nil (`set_upstream`): false is nil.
    TrueOrNil,
    /// `google.protobuf.Value`: any Lua value.
    Any,
    /// `google.protobuf.Struct` of header or query values, fixed up as MsgPack:1 does.
    MultiMap,
    /// `Consumer`, nil when empty.
    Consumer,
    /// `AuthenticatedCredential`, nil when empty.
    Credential,
    /// `Route`.
    Route,
    /// `Service`, nil when empty.
    Service,
    /// `RawBodyResult`: the body as bin.
    RawBody,
    /// `ByteString`: bin.
    Bytes,
    /// `UriCapturesResult`.
    UriCaptures,
    /// `MemoryStats`.
    MemoryStats,
}

struct Method {
    name: &'static str,
    how: How,
}

const fn native(name: &'static str, arg: Arg, reply: Reply) -> Method {
    Method {
        name,
        how: How::Native(arg, reply),
    }
}

const fn emulated(
    name: &'static str,
    emulate: fn(&mut Kong<'_>, &[Value]) -> Result<Value, HostError>,
) -> Method {
    Method {
        name,
        how: How::Emulated(emulate),
    }
}

const fn refuse(name: &'static str) -> Method {
    Method {
        name,
        how: How::Refused,
    }
}

/// Kong's defaults for `max_args` / `max_headers` (`kong/pdk/request.lua`, `response.lua`).
const MAX_DEFAULT: Arg = Arg::Int { default: 100 };

/// Every method our PDK types (`pdk-test/src/kong/catalogue.rs`), in its order.
#[rustfmt::skip]
static METHODS: &[Method] = &[
    // kong.client
    native("kong.client.get_ip", Arg::None, Reply::Text),
    native("kong.client.get_forwarded_ip", Arg::None, Reply::Text),
    native("kong.client.get_port", Arg::None, Reply::Integer),
    native("kong.client.get_forwarded_port", Arg::None, Reply::Integer),
    native("kong.client.get_credential", Arg::None, Reply::Credential),
    native("kong.client.load_consumer", Arg::ConsumerSpec, Reply::Consumer),
    native("kong.client.get_consumer", Arg::None, Reply::Consumer),
    native("kong.client.authenticate", Arg::Authenticate, Reply::Nothing),
    native("kong.client.get_protocol", Arg::Flag, Reply::OptionalText),
    refuse("kong.client.tls.request_client_certificate"),
    refuse("kong.client.tls.disable_session_reuse"),
    refuse("kong.client.tls.get_full_client_certificate_chain"),
    refuse("kong.client.tls.set_client_verify"),
    // kong.ctx, kong.nginx, kong.log, kong.ip, kong.node, kong.plugin, kong.cluster
    native("kong.ctx.shared.get", Arg::Text, Reply::Any),
    native("kong.ctx.shared.set", Arg::KeyValue, Reply::Nothing),
    native("kong.nginx.get_var", Arg::Text, Reply::OptionalText),
    native("kong.nginx.get_tls1_version_str", Arg::None, Reply::OptionalText),
    native("kong.nginx.get_ctx", Arg::Text, Reply::Any),
    native("kong.nginx.set_ctx", Arg::KeyValue, Reply::Nothing),
    native("kong.nginx.req_start_time", Arg::None, Reply::Number),
    native("kong.nginx.get_subsystem", Arg::None, Reply::Text),
    refuse("kong.nginx.get_statistics"),
    emulated("kong.log", emulated::log_notice),
    native("kong.log.alert", Arg::List, Reply::Nothing),
    native("kong.log.crit", Arg::List, Reply::Nothing),
    native("kong.log.err", Arg::List, Reply::Nothing),
    native("kong.log.warn", Arg::List, Reply::Nothing),
    native("kong.log.notice", Arg::List, Reply::Nothing),
    native("kong.log.info", Arg::List, Reply::Nothing),
    native("kong.log.debug", Arg::List, Reply::Nothing),
    refuse("kong.log.deprecation"),
    native("kong.log.set_serialize_value", Arg::KeyValue, Reply::Nothing),
    native("kong.log.serialize", Arg::None, Reply::Text),
    native("kong.ip.is_trusted", Arg::Text, Reply::Flag),
    native("kong.node.get_id", Arg::None, Reply::Text),
    refuse("kong.node.get_hostname"),
    native("kong.node.get_memory_stats", Arg::BytesUnit, Reply::MemoryStats),
    emulated("kong.plugin.get_id", emulated::plugin_id),
    refuse("kong.cluster.get_id"),
    // kong.request
    native("kong.request.get_scheme", Arg::None, Reply::Text),
    native("kong.request.get_host", Arg::None, Reply::Text),
    native("kong.request.get_port", Arg::None, Reply::Integer),
    native("kong.request.get_forwarded_scheme", Arg::None, Reply::Text),
    native("kong.request.get_forwarded_host", Arg::None, Reply::Text),
    emulated("kong.request.get_forwarded_path", emulated::forwarded_path),
    emulated("kong.request.get_forwarded_prefix", emulated::forwarded_prefix),
    native("kong.request.get_forwarded_port", Arg::None, Reply::Integer),
    native("kong.request.get_http_version", Arg::None, Reply::OptionalNumber),
    native("kong.request.get_method", Arg::None, Reply::Text),
    native("kong.request.get_path", Arg::None, Reply::Text),
    emulated("kong.request.get_raw_path", emulated::raw_path),
    native("kong.request.get_path_with_query", Arg::None, Reply::Text),
    native("kong.request.get_raw_query", Arg::None, Reply::Text),
    emulated("kong.request.get_query_arg", emulated::query_arg),
    native("kong.request.get_query", MAX_DEFAULT, Reply::MultiMap),
    native("kong.request.get_header", Arg::Text, Reply::OptionalText),
    native("kong.request.get_headers", MAX_DEFAULT, Reply::MultiMap),
    native("kong.request.get_raw_body", Arg::None, Reply::RawBody),
    emulated("kong.request.get_body", emulated::request_body),
    emulated("kong.request.get_start_time", emulated::start_time),
    native("kong.request.get_uri_captures", Arg::None, Reply::UriCaptures),
    // kong.response
    native("kong.response.get_status", Arg::None, Reply::Integer),
    native("kong.response.get_header", Arg::Text, Reply::OptionalText),
    native("kong.response.get_headers", MAX_DEFAULT, Reply::MultiMap),
    native("kong.response.get_source", Arg::None, Reply::Text),
    native("kong.response.set_status", Arg::Int { default: 0 }, Reply::Nothing),
    native("kong.response.set_header", Arg::KeyValue, Reply::Nothing),
    native("kong.response.add_header", Arg::KeyValue, Reply::Nothing),
    native("kong.response.clear_header", Arg::Text, Reply::Nothing),
    native("kong.response.set_headers", Arg::Map, Reply::Nothing),
    native("kong.response.exit", Arg::Exit, Reply::Nothing),
    emulated("kong.response.error", emulated::response_error),
    refuse("kong.response.get_raw_body"),
    refuse("kong.response.set_raw_body"),
    // kong.router, kong.service
    native("kong.router.get_route", Arg::None, Reply::Route),
    native("kong.router.get_service", Arg::None, Reply::Service),
    native("kong.service.set_upstream", Arg::Text, Reply::TrueOrNil),
    native("kong.service.set_target", Arg::Target, Reply::Nothing),
    refuse("kong.service.set_retries"),
    refuse("kong.service.set_timeouts"),
    refuse("kong.service.set_tls_verify"),
    refuse("kong.service.set_tls_verify_depth"),
    refuse("kong.service.set_tls_cert_key"),
    refuse("kong.service.set_tls_verify_store"),
    refuse("kong.service.set_target_retry_callback"),
    emulated("kong.service.request.enable_buffering", emulated::enable_buffering),
    native("kong.service.request.set_scheme", Arg::Text, Reply::Nothing),
    native("kong.service.request.set_path", Arg::Text, Reply::Nothing),
    native("kong.service.request.set_raw_query", Arg::Text, Reply::Nothing),
    native("kong.service.request.set_method", Arg::Text, Reply::Nothing),
    native("kong.service.request.set_query", Arg::Map, Reply::Nothing),
    emulated("kong.service.request.clear_query_arg", emulated::clear_query_arg),
    native("kong.service.request.set_header", Arg::KeyValue, Reply::Nothing),
    native("kong.service.request.add_header", Arg::KeyValue, Reply::Nothing),
    native("kong.service.request.clear_header", Arg::Text, Reply::Nothing),
    native("kong.service.request.set_headers", Arg::Map, Reply::Nothing),
    native("kong.service.request.set_raw_body", Arg::Bytes, Reply::Nothing),
    emulated("kong.service.request.set_body", emulated::set_body),
    refuse("kong.service.request.disable_tls"),
    native("kong.service.response.get_status", Arg::None, Reply::Integer),
    native("kong.service.response.get_header", Arg::Text, Reply::OptionalText),
    native("kong.service.response.get_headers", MAX_DEFAULT, Reply::MultiMap),
    native("kong.service.response.get_raw_body", Arg::None, Reply::Bytes),
    emulated("kong.service.response.get_body", emulated::service_response_body),
    // kong.vault, kong.telemetry
    refuse("kong.vault.get"),
    refuse("kong.vault.is_reference"),
    refuse("kong.vault.parse_reference"),
    refuse("kong.vault.update"),
    refuse("kong.vault.flush"),
    refuse("kong.telemetry.log"),
];

fn find(method: &str) -> Option<&'static Method> {
    static BY_NAME: LazyLock<HashMap<&str, &Method>> =
        LazyLock::new(|| METHODS.iter().map(|entry| (entry.name, entry)).collect());
    BY_NAME.get(method).copied()
}

/// The error for a method ProtoBuf:1 cannot serve, before any round trip.
fn refused(method: &str) -> HostError {
    let why = match find(method) {
        Some(_) => "is not among the methods Kong's ProtoBuf:1 serves (kong/include/kong/pluginsocket.proto)",
        None => "is not a PDK method this host knows, and Kong's ProtoBuf:1 serves only the methods of its .proto",
    };
    invalid_call(format!(
        "{method} {why}: serve this plugin with MsgPack:1 (docs/pdk-protocols.md) to use it"
    ))
}

fn invalid_call(message: String) -> HostError {
    HostError {
        kind: HostErrorKind::InvalidCall,
        message: message.into(),
    }
}

/// Kong's reply is not the method's result message, or says Kong could not give the result
/// (`RawBodyResult`'s file or error).
fn kong_error(message: String) -> HostError {
    HostError {
        kind: HostErrorKind::Kong,
        message: message.into(),
    }
}

fn decode_args(method: &str, args: &[u8]) -> Result<Vec<Value>, HostError> {
    match rmpv::decode::read_value(&mut &args[..]) {
        Ok(Value::Array(args)) => Ok(args),
        Ok(other) => Err(invalid_call(format!(
            "{method}: the arguments are {other}, not a MessagePack array"
        ))),
        Err(error) => Err(invalid_call(format!(
            "{method}: the arguments are not MessagePack: {error}"
        ))),
    }
}

/// Kong, seen through the event's connection: native calls by name, for the emulated methods
/// as for the plugin's own.
struct Kong<'a> {
    link: &'a mut dyn RoundTrip,
}

impl Kong<'_> {
    /// Calls native method `method` with MessagePack-shaped `args`; its result as MsgPack:1 would
    /// carry it.
    fn call(&mut self, method: &str, args: &[Value]) -> Result<Value, HostError> {
        match find(method).map(|entry| entry.how) {
            Some(How::Native(arg, reply)) => self.native_call(method, arg, reply, args),
            _ => unreachable!("{method} is not a native ProtoBuf:1 method"),
        }
    }

    /// One round trip: `method` with `args` as its argument message; Kong's reply undecoded.
    fn round_trip(&mut self, method: &str, arg: Arg, args: &[Value]) -> Result<Vec<u8>, HostError> {
        let encoded =
            encode_arg(arg, args).map_err(|why| invalid_call(format!("{method}: {why}")))?;
        self.link.round_trip(method, &encoded)
    }

    fn native_call(
        &mut self,
        method: &str,
        arg: Arg,
        reply: Reply,
        args: &[Value],
    ) -> Result<Value, HostError> {
        let answer = self.round_trip(method, arg, args)?;
        decode_reply(reply, &answer).map_err(|error| kong_error(format!("{method}: {error}")))
    }
}

fn arg(args: &[Value], index: usize) -> &Value {
    args.get(index).unwrap_or(&Value::Nil)
}

/// A text argument: str or bin (Lua has only strings); nil is Kong's default, the empty string.
fn text_arg(args: &[Value], index: usize, what: &str) -> Result<Vec<u8>, String> {
    match arg(args, index) {
        Value::Nil => Ok(Vec::new()),
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Binary(b) => Ok(b.clone()),
        other => Err(format!("{what} is {other}, not a string")),
    }
}

fn utf8_arg(args: &[Value], index: usize, what: &str) -> Result<String, String> {
    String::from_utf8(text_arg(args, index, what)?)
        .map_err(|_| format!("{what} is not UTF-8, which ProtoBuf:1 cannot carry here"))
}

fn int_arg(args: &[Value], index: usize, default: i32, what: &str) -> Result<i32, String> {
    match arg(args, index) {
        Value::Nil => Ok(default),
        Value::Integer(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("{what} {n} does not fit ProtoBuf:1's int32")),
        Value::F64(f) if f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX) => Ok(*f as i32),
        other => Err(format!("{what} is {other}, not an integer")),
    }
}

/// Lua truthiness: everything but nil and false.
fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Nil | Value::Boolean(false))
}

fn map_arg(value: &Value, what: &str) -> Result<prost_types::Struct, String> {
    match value {
        Value::Nil => Ok(prost_types::Struct::default()),
        // A Lua empty table arrives as an empty array.
        Value::Array(items) if items.is_empty() => Ok(prost_types::Struct::default()),
        Value::Map(_) => match pb_value_of(value)?.kind {
            Some(prost_types::value::Kind::StructValue(fields)) => Ok(fields),
            _ => unreachable!("a map converts to a struct"),
        },
        other => Err(format!("{what} is {other}, not a map")),
    }
}

/// `field` of a map argument (a consumer or credential entity), if present.
fn field<'v>(entity: &'v Value, field: &str) -> Option<&'v Value> {
    entity
        .as_map()?
        .iter()
        .find_map(|(key, value)| (key.as_str() == Some(field) && !value.is_nil()).then_some(value))
}

fn text_field(entity: &Value, name: &str) -> String {
    field(entity, name)
        .and_then(convert::text)
        .unwrap_or_default()
}

fn encode_arg(message: Arg, args: &[Value]) -> Result<Vec<u8>, String> {
    Ok(match message {
        Arg::None => Vec::new(),
        Arg::BytesUnit => match arg(args, 0) {
            Value::Nil => Vec::new(),
            unit if unit.as_str() == Some("b") => Vec::new(),
            unit => {
                return Err(format!(
                    "unit {unit}: ProtoBuf:1's MemoryStats carries bytes only; \
                     serve this plugin with MsgPack:1 for other units"
                ))
            }
        },
        Arg::Text => pb::String {
            v: text_arg(args, 0, "the argument")?,
        }
        .encode_to_vec(),
        Arg::Int { default } => pb::Int {
            v: int_arg(args, 0, default, "the argument")?,
        }
        .encode_to_vec(),
        Arg::Flag => pb::Bool {
            v: truthy(arg(args, 0)),
        }
        .encode_to_vec(),
        Arg::KeyValue if args.len() > 2 => {
            return Err(format!(
                "ProtoBuf:1's KV carries a key and a value, not a third argument ({}): \
                 serve this plugin with MsgPack:1 to pass it",
                arg(args, 2)
            ))
        }
        Arg::KeyValue => pb::Kv {
            k: utf8_arg(args, 0, "the key")?,
            v: Some(pb_value_of(arg(args, 1))?),
        }
        .encode_to_vec(),
        Arg::Map => map_arg(arg(args, 0), "the argument")?.encode_to_vec(),
        Arg::List => prost_types::ListValue {
            values: args.iter().map(pb_value_of).collect::<Result<_, _>>()?,
        }
        .encode_to_vec(),
        Arg::Bytes => pb::ByteString {
            v: text_arg(args, 0, "the body")?,
        }
        .encode_to_vec(),
        Arg::Exit => {
            let mut headers = match arg(args, 2) {
                Value::Nil => None,
                headers => Some(map_arg(headers, "the headers")?),
            };
            let body = match arg(args, 1) {
                // A table body: what Kong's `send` does with it, as ExitArgs carries only bytes.
                table @ (Value::Map(_) | Value::Array(_)) => {
                    let headers = headers.get_or_insert_with(Default::default);
                    let named = headers.fields.keys().any(|name| {
                        let name = name.to_ascii_lowercase();
                        name == "content-type" || name == "content_type"
                    });
                    if !named {
                        headers.fields.insert(
                            "Content-Type".into(),
                            pb_value_of(&Value::from("application/json; charset=utf-8"))?,
                        );
                    }
                    convert::cjson_encode(table)?.into_bytes()
                }
                _ => text_arg(args, 1, "the body")?,
            };
            pb::ExitArgs {
                status: int_arg(args, 0, 0, "the status")?,
                body,
                headers,
            }
            .encode_to_vec()
        }
        Arg::Target => pb::Target {
            host: utf8_arg(args, 0, "the host")?,
            port: int_arg(args, 1, 0, "the port")?,
        }
        .encode_to_vec(),
        Arg::ConsumerSpec => pb::ConsumerSpec {
            id: utf8_arg(args, 0, "the consumer id")?,
            by_username: truthy(arg(args, 1)),
        }
        .encode_to_vec(),
        Arg::Authenticate => {
            let consumer = arg(args, 0);
            let credential = arg(args, 1);
            pb::AuthenticateArgs {
                consumer: (!consumer.is_nil()).then(|| pb::Consumer {
                    id: text_field(consumer, "id"),
                    created_at: field(consumer, "created_at")
                        .and_then(convert::integer)
                        .unwrap_or_default(),
                    username: text_field(consumer, "username"),
                    custom_id: text_field(consumer, "custom_id"),
                    tags: field(consumer, "tags")
                        .and_then(Value::as_array)
                        .map(|tags| tags.iter().filter_map(convert::text).collect())
                        .unwrap_or_default(),
                }),
                credential: (!credential.is_nil()).then(|| pb::AuthenticatedCredential {
                    id: text_field(credential, "id"),
                    consumer_id: field(credential, "consumer_id")
                        .and_then(convert::text)
                        .or_else(|| {
                            field(credential, "consumer")
                                .and_then(|consumer| field(consumer, "id"))
                                .and_then(convert::text)
                        })
                        .unwrap_or_default(),
                }),
            }
            .encode_to_vec()
        }
    })
}

/// A map of the non-default fields: proto3 sends a nil field as its default, and MsgPack:1
/// would have left the field out.
struct Entity(Vec<(Value, Value)>);

impl Entity {
    fn new() -> Self {
        Entity(Vec::new())
    }

    fn text(mut self, name: &str, value: String) -> Self {
        if !value.is_empty() {
            self.0.push((Value::from(name), Value::from(value)));
        }
        self
    }

    fn integer(mut self, name: &str, value: impl Into<i64>) -> Self {
        let value = value.into();
        if value != 0 {
            self.0.push((Value::from(name), Value::from(value)));
        }
        self
    }

    fn flag(mut self, name: &str, value: bool) -> Self {
        if value {
            self.0.push((Value::from(name), Value::from(true)));
        }
        self
    }

    fn texts(mut self, name: &str, values: Vec<String>) -> Self {
        if !values.is_empty() {
            let values = values.into_iter().map(Value::from).collect();
            self.0.push((Value::from(name), Value::Array(values)));
        }
        self
    }

    fn reference(self, name: &str, id: Option<String>) -> Self {
        match id.filter(|id| !id.is_empty()) {
            Some(id) => self.value(name, Entity::new().text("id", id).into_value()),
            None => self,
        }
    }

    fn value(mut self, name: &str, value: Value) -> Self {
        self.0.push((Value::from(name), value));
        self
    }

    /// The map; an empty one is nil (Kong's function returned nil).
    fn into_value(self) -> Value {
        if self.0.is_empty() {
            Value::Nil
        } else {
            Value::Map(self.0)
        }
    }
}

/// Kong's reply frame as message `M`.
fn decode<M: Message + Default>(answer: &[u8]) -> Result<M, String> {
    M::decode(answer).map_err(|error| {
        let name = std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        format!("Kong's ProtoBuf:1 reply is not a {name} message: {error}")
    })
}

fn decode_reply(reply: Reply, answer: &[u8]) -> Result<Value, String> {
    Ok(match reply {
        Reply::Nothing => Value::Nil,
        Reply::Text => lua_string(decode::<pb::String>(answer)?.v),
        Reply::OptionalText => match decode::<pb::String>(answer)?.v {
            text if text.is_empty() => Value::Nil,
            text => lua_string(text),
        },
        Reply::Integer => Value::from(decode::<pb::Int>(answer)?.v),
        Reply::Number => lua_number(decode::<pb::Number>(answer)?.v),
        Reply::OptionalNumber => match decode::<pb::Number>(answer)?.v {
            0.0 => Value::Nil,
            number => lua_number(number),
        },
        Reply::Flag => Value::from(decode::<pb::Bool>(answer)?.v),
        Reply::TrueOrNil => match decode::<pb::Bool>(answer)?.v {
            true => Value::from(true),
            false => Value::Nil,
        },
        Reply::Any => value_of_pb(&decode::<prost_types::Value>(answer)?),
        Reply::MultiMap => convert::multi_map(decode::<prost_types::Struct>(answer)?),
        Reply::Consumer => {
            let consumer = decode::<pb::Consumer>(answer)?;
            Entity::new()
                .text("id", consumer.id)
                .integer("created_at", consumer.created_at)
                .text("username", consumer.username)
                .text("custom_id", consumer.custom_id)
                .texts("tags", consumer.tags)
                .into_value()
        }
        Reply::Credential => {
            let credential = decode::<pb::AuthenticatedCredential>(answer)?;
            Entity::new()
                .text("id", credential.id)
                .reference("consumer", Some(credential.consumer_id))
                .into_value()
        }
        Reply::Route => {
            let route = decode::<pb::Route>(answer)?;
            Entity::new()
                .text("id", route.id)
                .integer("created_at", route.created_at)
                .integer("updated_at", route.updated_at)
                .text("name", route.name)
                .texts("protocols", route.protocols)
                .texts("methods", route.methods)
                .texts("hosts", route.hosts)
                .texts("paths", route.paths)
                .integer(
                    "https_redirect_status_code",
                    route.https_redirect_status_code,
                )
                .integer("regex_priority", route.regex_priority)
                .flag("strip_path", route.strip_path)
                .flag("preserve_host", route.preserve_host)
                .texts("snis", route.snis)
                .texts("tags", route.tags)
                .reference("service", route.service.map(|service| service.id))
                .into_value()
        }
        Reply::Service => {
            let service = decode::<pb::Service>(answer)?;
            Entity::new()
                .text("id", service.id)
                .integer("created_at", service.created_at)
                .integer("updated_at", service.updated_at)
                .text("name", service.name)
                .integer("retries", service.retries)
                .text("protocol", service.protocol)
                .text("host", service.host)
                .integer("port", service.port)
                .text("path", service.path)
                .integer("connect_timeout", service.connect_timeout)
                .integer("write_timeout", service.write_timeout)
                .integer("read_timeout", service.read_timeout)
                .texts("tags", service.tags)
                .reference(
                    "client_certificate",
                    service.client_certificate.map(|certificate| certificate.id),
                )
                .into_value()
        }
        Reply::RawBody => return raw_body(decode::<pb::RawBodyResult>(answer)?),
        Reply::Bytes => Value::Binary(decode::<pb::ByteString>(answer)?.v),
        Reply::UriCaptures => {
            let captures = decode::<pb::UriCapturesResult>(answer)?;
            let named = if captures.named.is_empty() {
                Value::Array(Vec::new())
            } else {
                let mut named: Vec<_> = captures.named.into_iter().collect();
                named.sort();
                Value::Map(
                    named
                        .into_iter()
                        .map(|(name, value)| (Value::from(name), lua_string(value)))
                        .collect(),
                )
            };
            Value::Map(vec![
                (
                    Value::from("unnamed"),
                    Value::Array(captures.unnamed.into_iter().map(lua_string).collect()),
                ),
                (Value::from("named"), named),
            ])
        }
        Reply::MemoryStats => {
            let stats = decode::<pb::MemoryStats>(answer)?;
            let dicts = stats.lua_shared_dicts.unwrap_or_default();
            let dicts = [("kong", dicts.kong), ("kong_db_cache", dicts.kong_db_cache)]
                .into_iter()
                .filter_map(|(name, stats)| {
                    let stats = stats?;
                    let stats = Value::Map(vec![
                        (
                            Value::from("allocated_slabs"),
                            Value::from(stats.allocated_slabs),
                        ),
                        (Value::from("capacity"), Value::from(stats.capacity)),
                    ]);
                    Some((Value::from(name), stats))
                })
                .collect();
            let workers = stats
                .workers_lua_vms
                .into_iter()
                .map(|vm| {
                    Value::Map(vec![
                        (
                            Value::from("http_allocated_gc"),
                            Value::from(vm.http_allocated_gc),
                        ),
                        (Value::from("pid"), Value::from(vm.pid)),
                    ])
                })
                .collect();
            Value::Map(vec![
                (Value::from("lua_shared_dicts"), Value::Map(dicts)),
                (Value::from("workers_lua_vms"), Value::Array(workers)),
            ])
        }
    })
}

/// `RawBodyResult`: the body, or Kong's reason for not having it in memory. MsgPack:1 has no
/// answer then (packing nil as bin raises and the event dies); here the call fails with the
/// reason.
fn raw_body(result: pb::RawBodyResult) -> Result<Value, String> {
    use pb::raw_body_result::Kind;
    match result.kind {
        Some(Kind::Content(body)) => Ok(Value::Binary(body)),
        Some(Kind::BodyFilepath(path)) => Err(format!(
            "the request body is in the file {path} (larger than client_body_buffer_size), and \
             ProtoBuf:1's get_raw_body does not read files: raise client_body_buffer_size, or \
             serve this plugin with MsgPack:1 and pass max_allowed_file_size"
        )),
        Some(Kind::Error(error)) => Err(format!("Kong could not read the body: {error}")),
        None => Err("Kong sent no body".to_string()),
    }
}
