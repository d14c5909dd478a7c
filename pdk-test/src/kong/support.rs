//! `kong.ctx`, `kong.nginx`, `kong.log`, `kong.ip`, `kong.node`, `kong.plugin`, `kong.cluster`,
//! `kong.vault` and `kong.telemetry`.

use super::{optional, Answer, Args};
use crate::{
    http, lua,
    outcome::LogLevel,
    request::{NODE_ID, REQUEST_ID},
    state::{SerializeMode, SerializeValue, State},
};
use rmpv::Value;
use std::collections::BTreeMap;

/// A function whose only result is `true`.
pub(super) fn done(_: &mut State, _: &Args) -> Answer {
    Ok(Value::Boolean(true))
}

/// A function with no result and no effect on the request.
pub(super) fn nothing(_: &mut State, _: &Args) -> Answer {
    Ok(Value::Nil)
}

/// A table key: Kong indexes with whatever it gets, string keys are what plugins use.
fn key(a: &Args) -> Result<String, String> {
    a.string(0, "key")
}

/// Reads `table[key]`; in the log phase the table is the snapshot's copy.
fn get(table: &BTreeMap<String, Value>, a: &Args) -> Answer {
    Ok(table.get(&key(a)?).cloned().unwrap_or(Value::Nil))
}

/// `table[key] = value` (as Lua stores it); `nil` removes the key.
fn set(table: &mut BTreeMap<String, Value>, a: &Args) -> Answer {
    let key = key(a)?;
    match lua::through_lua(a.get(1).clone()) {
        Value::Nil => table.remove(&key),
        value => table.insert(key, value),
    };
    Ok(Value::Nil)
}

pub(super) fn shared_get(s: &mut State, a: &Args) -> Answer {
    get(&s.ctx_shared, a)
}

pub(super) fn shared_set(s: &mut State, a: &Args) -> Answer {
    set(&mut s.ctx_shared, a)
}

pub(super) fn get_ctx(s: &mut State, a: &Args) -> Answer {
    get(&s.nginx_ctx, a)
}

pub(super) fn set_ctx(s: &mut State, a: &Args) -> Answer {
    set(&mut s.nginx_ctx, a)
}

/// An nginx variable: the builder's, else one derived from the request; absent otherwise.
pub(super) fn get_var(s: &mut State, a: &Args) -> Answer {
    let name = a.string(0, "variable name")?;
    if let Some(value) = s.req.nginx_vars.get(&name) {
        return Ok(Value::from(value.as_str()));
    }
    let header = |name: &str| http::first_header(&s.headers, name).map(str::to_string);
    let value = match name.as_str() {
        "request_method" => Some(s.method.clone()),
        "request_uri" => Some(s.req.request_uri()),
        "uri" => Some(http::normalize_path(&s.req.path)),
        "args" | "query_string" => Some(s.query.clone()).filter(|q| !q.is_empty()),
        "is_args" => Some(if s.query.is_empty() { "" } else { "?" }.to_string()),
        "scheme" => Some(s.req.scheme.clone()),
        "host" | "server_name" => Some(s.req.host.clone()),
        "server_port" => Some(s.req.server_port().to_string()),
        "server_protocol" => Some(format!(
            "HTTP/{}",
            lua::tostring(&lua::number(s.req.http_version))
        )),
        "remote_addr" | "realip_remote_addr" => Some(s.req.client_ip.clone()),
        "remote_port" | "realip_remote_port" => Some(s.req.client_port.to_string()),
        "request_id" | "kong_request_id" => Some(REQUEST_ID.to_string()),
        "content_type" => header("content-type"),
        "content_length" => header("content-length"),
        "upstream_uri" => Some(s.upstream_uri()),
        "upstream_scheme" => Some(s.upstream.scheme.clone()),
        "upstream_host" => s.upstream.host_header.clone().or_else(|| header("host")),
        "ssl_protocol" => s.req.tls(),
        other => {
            if let Some(header_name) = other.strip_prefix("http_") {
                header(header_name)
            } else if let Some(arg) = other.strip_prefix("arg_") {
                http::parse_args(&s.query, usize::MAX)
                    .into_iter()
                    .find(|(name, _)| name == arg)
                    .map(|(_, value)| value.unwrap_or_default())
            } else if let Some(cookie) = other.strip_prefix("cookie_") {
                header("cookie").and_then(|cookies| {
                    cookies.split(';').find_map(|pair| {
                        let (name, value) = pair.trim().split_once('=')?;
                        (name == cookie).then(|| value.to_string())
                    })
                })
            } else {
                None
            }
        }
    };
    Ok(optional(value))
}

pub(super) fn tls_version(s: &mut State, _: &Args) -> Answer {
    Ok(optional(s.req.tls()))
}

/// Seconds since the epoch, with milliseconds.
pub(super) fn req_start_time(s: &mut State, _: &Args) -> Answer {
    Ok(lua::number(s.started_at_ms as f64 / 1000.0))
}

pub(super) fn subsystem(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(if s.is_stream() { "stream" } else { "http" }))
}

pub(super) fn statistics(_: &mut State, _: &Args) -> Answer {
    let counters = [
        ("connections_active", 1),
        ("connections_reading", 0),
        ("connections_writing", 1),
        ("connections_waiting", 0),
        ("connections_accepted", 1),
        ("connections_handled", 1),
        ("total_requests", 1),
    ];
    Ok(Value::Map(
        counters
            .into_iter()
            .map(|(name, n)| (Value::from(name), Value::from(n)))
            .collect(),
    ))
}

/// Records one log line: Kong concatenates `tostring` of every argument.
pub(super) fn log(s: &mut State, a: &Args, level: LogLevel) -> Answer {
    let message: String = a.0.iter().map(lua::tostring).collect();
    s.log(level, message);
    Ok(Value::Nil)
}

/// Recorded for the serializer; in the log phase it has no effect (the output was captured).
pub(super) fn set_serialize_value(s: &mut State, a: &Args) -> Answer {
    let key = a.string(0, "key")?;
    let options = a.get(2);
    let mode = match lua::entries(options)
        .into_iter()
        .find(|(k, _)| k.as_str() == Some("mode"))
        .and_then(|(_, mode)| lua::as_text(&mode))
        .as_deref()
    {
        None | Some("set") => SerializeMode::Set,
        Some("add") => SerializeMode::Add,
        Some("replace") => SerializeMode::Replace,
        Some(_) => return Err("mode must be 'set', 'add' or 'replace'".into()),
    };
    s.serialize_values.push(SerializeValue {
        key,
        value: lua::through_lua(a.get(1).clone()),
        mode,
    });
    Ok(Value::Nil)
}

/// The snapshot's serializer output as JSON text.
pub(super) fn serialize(s: &mut State, _: &Args) -> Answer {
    match s.serialized.clone() {
        Some(Ok(text)) => Ok(Value::from(text)),
        Some(Err(error)) => Err(error),
        None => Err("the serializer ran before the log phase".into()),
    }
}

pub(super) fn is_trusted(s: &mut State, a: &Args) -> Answer {
    let address = a.string(0, "address")?;
    Ok(Value::Boolean(s.is_trusted(&address)))
}

pub(super) fn node_id(_: &mut State, _: &Args) -> Answer {
    Ok(Value::from(NODE_ID))
}

pub(super) fn hostname(_: &mut State, _: &Args) -> Answer {
    Ok(Value::from("kong-test"))
}

pub(super) fn plugin_id(s: &mut State, _: &Args) -> Answer {
    Ok(Value::from(s.plugin_id.as_str()))
}

/// DB-less nodes (what tests model) have no cluster id.
pub(super) fn cluster_id(_: &mut State, _: &Args) -> Answer {
    Ok(Value::Nil)
}

/// Memory statistics in `unit` (`b`, `k`, `m`, `g`; bytes as numbers, the others as text with
/// `scale` decimals).
pub(super) fn memory_stats(_: &mut State, a: &Args) -> Answer {
    let unit = a.opt_string(0, "unit")?.unwrap_or_else(|| "b".into());
    let scale = a.opt_number(1, "scale")?.unwrap_or(2.0) as usize;
    let format = |bytes: u64| -> Result<Value, String> {
        let (divisor, suffix) = match unit.to_ascii_lowercase().as_str() {
            "b" => return Ok(Value::from(bytes)),
            "k" => (1024.0, "KiB"),
            "m" => (1024.0 * 1024.0, "MiB"),
            "g" => (1024.0 * 1024.0 * 1024.0, "GiB"),
            _ => {
                return Err(format!(
                    "invalid unit '{unit}' (expected 'k/K', 'm/M', or 'g/G')"
                ))
            }
        };
        Ok(Value::from(format!(
            "{:.scale$} {suffix}",
            bytes as f64 / divisor
        )))
    };
    let dict = |allocated: u64, capacity: u64| -> Result<Value, String> {
        Ok(Value::Map(vec![
            (Value::from("allocated_slabs"), format(allocated)?),
            (Value::from("capacity"), format(capacity)?),
        ]))
    };
    let worker = Value::Map(vec![
        (Value::from("http_allocated_gc"), format(1_102_848)?),
        (Value::from("pid"), Value::from(std::process::id())),
    ]);
    Ok(Value::Map(vec![
        (
            Value::from("lua_shared_dicts"),
            Value::Map(vec![
                (Value::from("kong"), dict(40_960, 5_242_880)?),
                (Value::from("kong_db_cache"), dict(794_624, 134_217_728)?),
            ]),
        ),
        (Value::from("workers_lua_vms"), Value::Array(vec![worker])),
    ]))
}

fn reference(a: &Args) -> Result<String, String> {
    a.string(0, "reference")
}

/// The secret the request builder declared for a reference; absent otherwise.
pub(super) fn vault_get(s: &mut State, a: &Args) -> Answer {
    Ok(optional(s.req.vault.get(&reference(a)?).cloned()))
}

pub(super) fn vault_is_reference(_: &mut State, a: &Args) -> Answer {
    Ok(Value::Boolean(parse_reference(&reference(a)?).is_some()))
}

pub(super) fn vault_parse_reference(_: &mut State, a: &Args) -> Answer {
    Ok(optional(parse_reference(&reference(a)?)))
}

/// `{vault://<name>/<resource>[/<key>][/<version>][?<config>]}` as Kong's map.
fn parse_reference(reference: &str) -> Option<Value> {
    let inner = reference.strip_prefix("{vault://")?.strip_suffix('}')?;
    let (path, query) = inner.split_once('?').unwrap_or((inner, ""));
    let mut parts = path.split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let resource = parts.next().filter(|r| !r.is_empty())?;
    let mut fields = vec![
        (Value::from("name"), Value::from(name)),
        (Value::from("resource"), Value::from(resource)),
    ];
    if let Some(key) = parts.next().filter(|k| !k.is_empty()) {
        fields.push((Value::from("key"), Value::from(key)));
    }
    if let Some(version) = parts.next().and_then(|v| v.parse::<i64>().ok()) {
        fields.push((Value::from("version"), Value::from(version)));
    }
    if !query.is_empty() {
        fields.push((
            Value::from("config"),
            http::args_table(&http::parse_args(query, usize::MAX)),
        ));
    }
    Some(Value::Map(fields))
}

/// The table with every string that is a known reference replaced by its secret.
pub(super) fn vault_update(s: &mut State, a: &Args) -> Answer {
    fn resolve(value: Value, secrets: &BTreeMap<String, String>) -> Value {
        match value {
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, resolve(v, secrets)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| resolve(v, secrets)).collect())
            }
            other => match lua::as_text(&other).and_then(|text| secrets.get(&text)) {
                Some(secret) => Value::from(secret.as_str()),
                None => other,
            },
        }
    }
    let table = a.get(0);
    if !lua::is_table(table) {
        return Err("options must be a table".into());
    }
    Ok(resolve(lua::through_lua(table.clone()), &s.req.vault))
}
