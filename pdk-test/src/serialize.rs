//! `kong.log.serialize()`: the table Kong's log serializer builds for the request, with the
//! `kong.log.set_serialize_value` edits applied.

use super::{
    http, lua,
    state::{SerializeMode, SerializeValue, State},
};
use rmpv::Value;
use serde_json::{json, Map, Value as Json};

/// The serializer output as JSON, or the error Kong raises for an edit it cannot apply.
pub(crate) fn serialize(state: &State) -> Result<Json, String> {
    let mut root = if state.is_stream() {
        stream_fields(state)
    } else {
        http_fields(state)
    };
    let common = [
        ("tries", tries(state)),
        ("authenticated_entity", authenticated_entity(state)),
        ("route", state.route.as_ref().map(lua::to_json)),
        ("service", state.service.as_ref().map(lua::to_json)),
        ("consumer", state.consumer.as_ref().map(lua::to_json)),
        ("client_ip", Some(Json::from(state.req.client_ip.as_str()))),
        ("started_at", Some(Json::from(state.started_at_ms))),
    ];
    for (key, value) in common {
        if let Some(value) = value {
            root.insert(key.into(), value);
        }
    }
    let mut root = Json::Object(root);
    // Kong redacts these unless a plugin sets them itself (its default serialize values).
    let redactions = (!state.is_stream()).then(|| {
        ["authorization", "proxy-authorization"].map(|header| SerializeValue {
            key: format!("request.headers.{header}"),
            value: Value::from("REDACTED"),
            mode: SerializeMode::Replace,
        })
    });
    for edit in redactions.iter().flatten().chain(&state.serialize_values) {
        apply(&mut root, edit)?;
    }
    Ok(root)
}

fn http_fields(state: &State) -> Map<String, Json> {
    let req = &state.req;
    let request_uri = req.request_uri();
    let request_line = format!("{} {request_uri} HTTP/{}", state.method, req.http_version);
    let status_line = format!("HTTP/1.1 {}", state.response.status);
    let mut request = json!({
        "uri": request_uri,
        "url": format!("{}://{}:{}{request_uri}", req.scheme, req.host, req.server_port()),
        "querystring": lua::to_json(&http::args_table(&http::parse_args(&state.query, 100))),
        "method": state.method,
        "headers": http::headers_json(&state.headers),
        "size": http::wire_size(&request_line, &state.headers, &state.body),
    });
    if let Some(version) = req.tls() {
        request["tls"] = json!({ "version": version, "cipher": "TLS_AES_256_GCM_SHA384", "client_verify": "NONE" });
    }
    let response = &state.response;
    let proxy_latency = if state.proxied() { req.latencies.1 } else { -1 };
    json!({
        "request": request,
        "upstream_uri": state.upstream_uri(),
        "response": {
            "status": response.status,
            "headers": http::headers_json(&response.headers),
            "size": http::wire_size(&status_line, &response.headers, &response.body),
        },
        "latencies": { "kong": req.latencies.0, "proxy": proxy_latency, "request": req.latencies.2 },
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn stream_fields(state: &State) -> Map<String, Json> {
    let req = &state.req;
    let mut session = json!({
        "received": req.body.len(),
        "sent": state.response.body.len(),
        "status": state.response.status,
        "server_port": req.server_port(),
    });
    if let Some(version) = req.tls() {
        session["tls"] = json!({ "version": version, "cipher": "TLS_AES_256_GCM_SHA384", "client_verify": "NONE" });
    }
    json!({
        "session": session,
        "upstream": { "received": state.response.body.len(), "sent": req.body.len() },
        "latencies": { "kong": req.latencies.0, "session": req.latencies.2 },
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn tries(state: &State) -> Option<Json> {
    let sent = state.sent.as_ref()?;
    Some(json!([{
        "ip": sent.host,
        "port": sent.port,
        "balancer_start": state.started_at_ms,
        "balancer_latency": 0,
    }]))
}

fn authenticated_entity(state: &State) -> Option<Json> {
    let credential = state.credential.as_ref()?;
    let field = |name| super::state::lua_value(Some(credential), name).map(lua::to_json);
    let mut entity = Map::new();
    for name in ["id", "consumer_id"] {
        if let Some(value) = field(name) {
            entity.insert(name.into(), value);
        }
    }
    Some(Json::Object(entity))
}

/// One `set_serialize_value`: dots in the key walk (and in `set`/`add` mode create) sub-tables.
fn apply(root: &mut Json, edit: &SerializeValue) -> Result<(), String> {
    let path: Vec<&str> = edit.key.split('.').collect();
    let (last, parents) = path.split_last().unwrap_or((&"", &[]));
    let mut node = root;
    for subkey in parents {
        let table = as_table(node);
        if !table.contains_key(*subkey) {
            if edit.mode == SerializeMode::Replace {
                return Ok(());
            }
            table.insert(subkey.to_string(), Json::Object(Map::new()));
        }
        node = table
            .get_mut(*subkey)
            .expect("the sub-table exists or was just created");
        if !node.is_object() && !node.is_array() {
            return Err(format!(
                "The key '{}' could not be used as a serialize value. Subkey '{subkey}' is not a table. It's {}",
                edit.key,
                lua::tostring(&lua::from_json(node))
            ));
        }
    }
    let table = as_table(node);
    let exists = table.contains_key(*last);
    let applies = match edit.mode {
        SerializeMode::Set => true,
        SerializeMode::Add => !exists,
        SerializeMode::Replace => exists,
    };
    if applies {
        match &edit.value {
            Value::Nil => {
                table.remove(*last);
            }
            value => {
                table.insert(last.to_string(), lua::to_json(value));
            }
        }
    }
    Ok(())
}

/// A JSON value as the Lua table it was: an array becomes a table keyed "1".."n" when a string
/// key is written into it.
fn as_table(node: &mut Json) -> &mut Map<String, Json> {
    if !node.is_object() {
        let keyed = match std::mem::take(node) {
            Json::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| ((i + 1).to_string(), item))
                .collect(),
            _ => Map::new(),
        };
        *node = Json::Object(keyed);
    }
    node.as_object_mut().expect("an object was just stored")
}
