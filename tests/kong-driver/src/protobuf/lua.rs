//! What Kong's lua-protobuf does with a message: `pb.decode` into a Lua table keyed by field
//! name (fields absent on the wire stay nil; 64-bit integers as numbers; enums by name), and
//! `pb.encode` from one; and `pb_rpc.lua`'s `pb_unwrap`/`pb_wrap`, which turn a method's
//! argument message into the PDK function's arguments and its first result into the reply
//! message. Tables are [`LuaValue`]s.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::value::LuaValue;

/// Kong's `kong_plugin_protocol` package (and the well-known types it uses), from the host's
/// `.proto` files.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/kong.fds"))[..])
            .expect("the descriptor set build.rs wrote")
    })
}

/// A message type by its full name without the leading dot, e.g.
/// `kong_plugin_protocol.RpcCall`.
pub fn message(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(name.trim_start_matches('.'))
        .unwrap_or_else(|| panic!("no message {name} in host/proto"))
}

/// `pb.decode(type, bytes)`: `Err` where lua-protobuf returns nil and an error.
pub fn decode(desc: &MessageDescriptor, bytes: &[u8]) -> Result<LuaValue, String> {
    let message = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|error| format!("pb.decode {}: {error}", desc.full_name()))?;
    Ok(table(&message))
}

/// `pb.encode(type, table)`.
pub fn encode(desc: &MessageDescriptor, table: &LuaValue) -> Result<Vec<u8>, String> {
    Ok(from_table(desc, table)?.encode_to_vec())
}

fn table(message: &DynamicMessage) -> LuaValue {
    LuaValue::Map(
        message
            .fields()
            .map(|(field, value)| (LuaValue::str(field.name()), to_lua(value, &field.kind())))
            .collect(),
    )
}

fn to_lua(value: &Value, kind: &Kind) -> LuaValue {
    match value {
        Value::Bool(b) => LuaValue::Bool(*b),
        Value::I32(n) => LuaValue::Num(*n as f64),
        Value::I64(n) => LuaValue::Num(*n as f64),
        Value::U32(n) => LuaValue::Num(*n as f64),
        Value::U64(n) => LuaValue::Num(*n as f64),
        Value::F32(n) => LuaValue::Num(*n as f64),
        Value::F64(n) => LuaValue::Num(*n),
        Value::String(s) => LuaValue::str(s),
        Value::Bytes(b) => LuaValue::str(b),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or(LuaValue::Num(*n as f64), |v| LuaValue::str(v.name())),
            _ => LuaValue::Num(*n as f64),
        },
        Value::Message(m) => table(m),
        Value::List(items) => LuaValue::Array(items.iter().map(|v| to_lua(v, kind)).collect()),
        Value::Map(entries) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            LuaValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (map_key_to_lua(k), to_lua(v, &value_kind)))
                    .collect(),
            )
        }
    }
}

fn map_key_to_lua(key: &MapKey) -> LuaValue {
    match key {
        MapKey::Bool(b) => LuaValue::Bool(*b),
        MapKey::I32(n) => LuaValue::Num(*n as f64),
        MapKey::I64(n) => LuaValue::Num(*n as f64),
        MapKey::U32(n) => LuaValue::Num(*n as f64),
        MapKey::U64(n) => LuaValue::Num(*n as f64),
        MapKey::String(s) => LuaValue::str(s),
    }
}

/// The entries of a Lua table; an empty one may be a sequence or not.
fn entries(table: &LuaValue) -> Result<Vec<(LuaValue, LuaValue)>, String> {
    match table {
        LuaValue::Map(entries) => Ok(entries.clone()),
        LuaValue::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (LuaValue::Num((i + 1) as f64), v.clone()))
            .collect()),
        LuaValue::EmptyMap => Ok(Vec::new()),
        other => Err(format!("table expected, got {other:?}")),
    }
}

fn from_table(desc: &MessageDescriptor, table: &LuaValue) -> Result<DynamicMessage, String> {
    let mut message = DynamicMessage::new(desc.clone());
    for (key, value) in entries(table)? {
        let LuaValue::Str(name) = &key else { continue };
        let name = String::from_utf8_lossy(name);
        let Some(field) = desc.get_field_by_name(&name) else {
            continue;
        };
        if matches!(value, LuaValue::Nil) {
            continue;
        }
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let (key_kind, value_kind) = (
                entry.map_entry_key_field().kind(),
                entry.map_entry_value_field().kind(),
            );
            let mut map = HashMap::new();
            for (k, v) in entries(&value)? {
                map.insert(map_key(&key_kind, &k)?, single(&value_kind, &v)?);
            }
            Value::Map(map)
        } else if field.is_list() {
            let items = entries(&value)?;
            Value::List(
                items
                    .iter()
                    .map(|(_, v)| single(&field.kind(), v))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            single(&field.kind(), &value)?
        };
        message.set_field(&field, value);
    }
    Ok(message)
}

fn number(value: &LuaValue) -> Result<f64, String> {
    match value {
        LuaValue::Num(n) => Ok(*n),
        LuaValue::Str(s) => String::from_utf8_lossy(s)
            .trim()
            .parse()
            .map_err(|_| format!("number expected, got {value:?}")),
        other => Err(format!("number expected, got {other:?}")),
    }
}

fn string(value: &LuaValue) -> Result<Vec<u8>, String> {
    match value {
        LuaValue::Str(s) | LuaValue::Bin(s) => Ok(s.clone()),
        LuaValue::Num(n) => Ok(crate::sim::lua_number_to_string(*n).into_bytes()),
        other => Err(format!("string expected, got {other:?}")),
    }
}

fn single(kind: &Kind, value: &LuaValue) -> Result<Value, String> {
    Ok(match kind {
        Kind::Double => Value::F64(number(value)?),
        Kind::Float => Value::F32(number(value)? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(number(value)? as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(number(value)? as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(number(value)? as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(number(value)? as u64),
        Kind::Bool => match value {
            LuaValue::Bool(b) => Value::Bool(*b),
            other => return Err(format!("boolean expected, got {other:?}")),
        },
        Kind::String => Value::String(String::from_utf8_lossy(&string(value)?).into_owned()),
        Kind::Bytes => Value::Bytes(string(value)?.into()),
        Kind::Enum(e) => match value {
            LuaValue::Str(name) => {
                let name = String::from_utf8_lossy(name);
                let v = e
                    .get_value_by_name(&name)
                    .ok_or_else(|| format!("no enum value {name} in {}", e.full_name()))?;
                Value::EnumNumber(v.number())
            }
            other => Value::EnumNumber(number(other)? as i32),
        },
        Kind::Message(desc) => Value::Message(from_table(desc, value)?),
    })
}

fn map_key(kind: &Kind, key: &LuaValue) -> Result<MapKey, String> {
    Ok(match kind {
        Kind::String => MapKey::String(String::from_utf8_lossy(&string(key)?).into_owned()),
        Kind::Bool => match key {
            LuaValue::Bool(b) => MapKey::Bool(*b),
            other => return Err(format!("boolean key expected, got {other:?}")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(number(key)? as i32),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(number(key)? as u32),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(number(key)? as u64),
        _ => MapKey::I64(number(key)? as i64),
    })
}

/// `t[name]` of a decoded table.
fn get<'a>(table: &'a LuaValue, name: &str) -> &'a LuaValue {
    match table {
        LuaValue::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, LuaValue::Str(s) if s == name.as_bytes()))
            .map_or(&LuaValue::Nil, |(_, v)| v),
        _ => &LuaValue::Nil,
    }
}

/// Lua's truthiness, for `a or b`.
fn truthy(value: &LuaValue) -> bool {
    !matches!(value, LuaValue::Nil | LuaValue::Bool(false))
}

fn structpb_value(v: &LuaValue) -> LuaValue {
    let list = get(v, "list_value");
    if truthy(list) {
        return structpb_list(list);
    }
    let fields = get(v, "struct_value");
    if truthy(fields) {
        return structpb_struct(fields);
    }
    // `v.bool_value or v.string_value or v.number_value or v.null_value`
    ["bool_value", "string_value", "number_value", "null_value"]
        .iter()
        .map(|name| get(v, name))
        .find(|value| truthy(value))
        .cloned()
        .unwrap_or(LuaValue::Nil)
}

fn structpb_list(l: &LuaValue) -> LuaValue {
    let values = match get(l, "values") {
        LuaValue::Nil => l,
        values => values,
    };
    match values {
        LuaValue::Array(items) => LuaValue::Array(items.iter().map(structpb_value).collect()),
        _ => LuaValue::Array(Vec::new()),
    }
}

fn structpb_struct(s: &LuaValue) -> LuaValue {
    let fields = match get(s, "fields") {
        LuaValue::Nil => s,
        fields => fields,
    };
    match fields {
        LuaValue::Map(entries) => LuaValue::Map(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), structpb_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `pb_unwrap[input_type](arg)`: the PDK function's arguments.
pub fn unwrap(input_type: &str, arg: LuaValue) -> Vec<LuaValue> {
    let one = |v: &LuaValue| vec![v.clone()];
    let args = match input_type.trim_start_matches('.') {
        "google.protobuf.Empty" => Vec::new(),
        "google.protobuf.Value" => vec![structpb_value(&arg)],
        "google.protobuf.ListValue" => match structpb_list(&arg) {
            LuaValue::Array(items) => items,
            _ => Vec::new(),
        },
        "google.protobuf.Struct" => vec![structpb_struct(&arg)],
        "kong_plugin_protocol.Bool"
        | "kong_plugin_protocol.Number"
        | "kong_plugin_protocol.Int"
        | "kong_plugin_protocol.String"
        | "kong_plugin_protocol.ByteString" => one(get(&arg, "v")),
        "kong_plugin_protocol.KV" => vec![get(&arg, "k").clone(), structpb_value(get(&arg, "v"))],
        "kong_plugin_protocol.Target" => vec![get(&arg, "host").clone(), get(&arg, "port").clone()],
        "kong_plugin_protocol.ExitArgs" => vec![
            get(&arg, "status").clone(),
            get(&arg, "body").clone(),
            match get(&arg, "headers") {
                LuaValue::Nil => LuaValue::Nil,
                headers => structpb_struct(headers),
            },
        ],
        "kong_plugin_protocol.ConsumerSpec" => {
            vec![get(&arg, "id").clone(), get(&arg, "by_username").clone()]
        }
        "kong_plugin_protocol.AuthenticateArgs" => {
            vec![
                get(&arg, "consumer").clone(),
                get(&arg, "credential").clone(),
            ]
        }
        _ => vec![arg],
    };
    // Lua's `unpack` of trailing nils: the function sees fewer arguments.
    let len = args
        .iter()
        .rposition(|v| !matches!(v, LuaValue::Nil))
        .map_or(0, |i| i + 1);
    args.into_iter().take(len).collect()
}

fn wrap_value(v: &LuaValue) -> LuaValue {
    let field = |name: &str, value: LuaValue| (LuaValue::str(name), value);
    match v {
        LuaValue::Nil => LuaValue::Map(vec![field("null_value", LuaValue::Num(1.0))]),
        LuaValue::Bool(b) => LuaValue::Map(vec![field("bool_value", LuaValue::Bool(*b))]),
        LuaValue::Num(n) => LuaValue::Map(vec![field("number_value", LuaValue::Num(*n))]),
        LuaValue::Str(s) | LuaValue::Bin(s) => {
            LuaValue::Map(vec![field("string_value", LuaValue::str(s))])
        }
        LuaValue::Array(items) if !items.is_empty() => {
            LuaValue::Map(vec![field("list_value", wrap_list(v))])
        }
        table => LuaValue::Map(vec![field("struct_value", wrap_struct(table))]),
    }
}

fn wrap_list(l: &LuaValue) -> LuaValue {
    let items = match l {
        LuaValue::Array(items) => items.iter().map(wrap_value).collect(),
        _ => Vec::new(),
    };
    LuaValue::Map(vec![(LuaValue::str("values"), LuaValue::Array(items))])
}

fn wrap_struct(d: &LuaValue) -> LuaValue {
    let fields = entries(d)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, wrap_value(&v)))
        .collect();
    LuaValue::Map(vec![(LuaValue::str("fields"), LuaValue::Map(fields))])
}

/// `pb_wrap[output_type](result)`: the table encoded as the reply; `None` (Lua nil) is sent
/// as an empty frame.
pub fn wrap(output_type: &str, result: Option<LuaValue>) -> Option<LuaValue> {
    let wrapped = |v: LuaValue| Some(LuaValue::Map(vec![(LuaValue::str("v"), v)]));
    match output_type.trim_start_matches('.') {
        "google.protobuf.Value" => Some(wrap_value(&result.unwrap_or(LuaValue::Nil))),
        "google.protobuf.ListValue" => Some(wrap_list(&result.unwrap_or(LuaValue::Nil))),
        "google.protobuf.Struct" => Some(wrap_struct(&result.unwrap_or(LuaValue::EmptyMap))),
        "kong_plugin_protocol.Bool"
        | "kong_plugin_protocol.Number"
        | "kong_plugin_protocol.Int"
        | "kong_plugin_protocol.String"
        | "kong_plugin_protocol.ByteString" => wrapped(result.unwrap_or(LuaValue::Nil)),
        "kong_plugin_protocol.RawBodyResult" => Some(match result {
            Some(LuaValue::Str(body) | LuaValue::Bin(body)) => {
                LuaValue::Map(vec![(LuaValue::str("content"), LuaValue::Str(body))])
            }
            _ => LuaValue::Map(vec![(
                LuaValue::str("error"),
                LuaValue::str("Can't read request body"),
            )]),
        }),
        _ => result,
    }
}

/// The type name a descriptor goes by in `pb_unwrap`/`pb_wrap`.
pub fn type_name(desc: &MessageDescriptor) -> String {
    format!(".{}", desc.full_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message_name: &str, result: LuaValue) -> Vec<LuaValue> {
        let desc = message(message_name);
        let wrapped = wrap(&type_name(&desc), Some(result)).unwrap();
        let bytes = encode(&desc, &wrapped).unwrap();
        unwrap(&type_name(&desc), decode(&desc, &bytes).unwrap())
    }

    #[test]
    fn kongs_value_wrapping_loses_false_and_keeps_the_rest() {
        // `bool_value or string_value or number_value or null_value`: false falls through.
        let value = "google.protobuf.Value";
        assert_eq!(
            round_trip(value, LuaValue::Bool(false)),
            Vec::<LuaValue>::new()
        );
        assert_eq!(
            round_trip(value, LuaValue::Bool(true)),
            [LuaValue::Bool(true)]
        );
        assert_eq!(round_trip(value, LuaValue::Num(2.5)), [LuaValue::Num(2.5)]);
        assert_eq!(round_trip(value, LuaValue::str("x")), [LuaValue::str("x")]);
        let table = LuaValue::map([("a", LuaValue::array([LuaValue::int(1)]))]);
        assert_eq!(round_trip(value, table.clone()), [table]);
    }

    #[test]
    fn wrapper_messages_carry_v_and_an_empty_string_is_no_value_at_all() {
        let string = "kong_plugin_protocol.String";
        assert_eq!(round_trip(string, LuaValue::str("h")), [LuaValue::str("h")]);
        // proto3 leaves "" off the wire: the PDK function gets no argument.
        assert_eq!(
            round_trip(string, LuaValue::str("")),
            Vec::<LuaValue>::new()
        );
        let bytes = encode(
            &message(string),
            &wrap(string, Some(LuaValue::str(""))).unwrap(),
        );
        assert_eq!(bytes.unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn exit_args_unwrap_into_status_body_and_headers() {
        let desc = message("kong_plugin_protocol.ExitArgs");
        let args = LuaValue::map([
            ("status", LuaValue::int(403)),
            ("body", LuaValue::str("denied")),
            (
                "headers",
                LuaValue::map([(
                    "fields",
                    LuaValue::map([("x-a", LuaValue::map([("string_value", "b")]))]),
                )]),
            ),
        ]);
        let bytes = encode(&desc, &args).unwrap();
        assert_eq!(
            unwrap(&type_name(&desc), decode(&desc, &bytes).unwrap()),
            [
                LuaValue::Num(403.0),
                LuaValue::str("denied"),
                LuaValue::map([("x-a", "b")])
            ]
        );
    }
}
