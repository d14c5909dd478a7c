//! Lua values between the two protocols: the MessagePack values the PDK sends and reads
//! (lua-MessagePack's shapes, docs/protocol.md §6.2) and `google.protobuf.Value`, as
//! `pb_rpc.lua`'s `pb_wrap`/`pb_unwrap` turn Lua values into it and back.

use prost_types::{value::Kind, ListValue, Struct};
use rmpv::Value;

/// The largest integer a Lua double holds exactly; lua-MessagePack packs integral numbers below
/// it as integers.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A Lua number as lua-MessagePack packs it: an integer when integral and exact, else a double.
/// Over ProtoBuf:1 every Lua number is a double (`number_value`, `Number`).
pub(super) fn lua_number(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < EXACT_INTEGER {
        Value::from(number as i64)
    } else {
        Value::F64(number)
    }
}

/// A Lua string as lua-MessagePack packs it: str, whatever its bytes.
pub(super) fn lua_string(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(error) => {
            // rmpv builds a str of invalid UTF-8 only by decoding one.
            let bytes = error.into_bytes();
            let mut encoded = Vec::with_capacity(bytes.len() + 5);
            rmp::encode::write_str_len(&mut encoded, bytes.len() as u32)
                .expect("writing to a Vec cannot fail");
            encoded.extend_from_slice(&bytes);
            rmpv::decode::read_value(&mut encoded.as_slice()).expect("a str just encoded")
        }
    }
}

/// Writes `value` as MessagePack. Unlike rmpv's writer, a str that is not UTF-8 stays a str (rmpv
/// writes it as bin): lua-MessagePack packs every Lua string as str.
pub(super) fn write_lua_value(out: &mut Vec<u8>, value: &Value) {
    const INFALLIBLE: &str = "writing to a Vec cannot fail";
    match value {
        Value::String(text) if text.is_err() => {
            rmp::encode::write_str_len(out, text.as_bytes().len() as u32).expect(INFALLIBLE);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Array(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).expect(INFALLIBLE);
            items.iter().for_each(|item| write_lua_value(out, item));
        }
        Value::Map(entries) => {
            rmp::encode::write_map_len(out, entries.len() as u32).expect(INFALLIBLE);
            for (key, value) in entries {
                write_lua_value(out, key);
                write_lua_value(out, value);
            }
        }
        other => rmpv::encode::write_value(out, other).expect(INFALLIBLE),
    }
}

/// The text of a str or bin.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

pub(super) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => n.as_i64(),
        Value::F64(f) if f.fract() == 0.0 && f.abs() < EXACT_INTEGER => Some(*f as i64),
        _ => None,
    }
}

/// A MessagePack argument as the `google.protobuf.Value` from which Kong's `structpb_value`
/// gives back the same Lua value. nil is a Value without a kind: Kong reads `null_value` as the
/// string "NULL_VALUE" (lua-protobuf decodes enums to their names).
pub(super) fn pb_value_of(value: &Value) -> Result<prost_types::Value, String> {
    let kind = match value {
        Value::Nil => None,
        Value::Boolean(flag) => Some(Kind::BoolValue(*flag)),
        Value::Integer(n) => Some(Kind::NumberValue(n.as_f64().unwrap_or_default())),
        Value::F32(f) => Some(Kind::NumberValue(f64::from(*f))),
        Value::F64(f) => Some(Kind::NumberValue(*f)),
        Value::String(s) => Some(Kind::StringValue(utf8(s.as_bytes())?)),
        Value::Binary(b) => Some(Kind::StringValue(utf8(b)?)),
        Value::Array(items) => Some(Kind::ListValue(ListValue {
            values: items.iter().map(pb_value_of).collect::<Result<_, _>>()?,
        })),
        Value::Map(entries) => {
            let mut fields = std::collections::BTreeMap::new();
            for (key, value) in entries {
                let key = match key {
                    Value::String(_) | Value::Binary(_) => text(key).unwrap_or_default(),
                    other => {
                        return Err(format!(
                            "map key {other} is not a string, which google.protobuf.Struct needs"
                        ))
                    }
                };
                fields.insert(key, pb_value_of(value)?);
            }
            Some(Kind::StructValue(Struct { fields }))
        }
        Value::Ext(..) => return Err("a MessagePack ext value has no Lua equivalent".into()),
    };
    Ok(prost_types::Value { kind })
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| "a string that is not UTF-8, which google.protobuf.Value cannot carry".into())
}

/// Kong's `google.protobuf.Value` as the MessagePack value MsgPack:1 would have carried for the
/// same Lua value. Kong encodes nil as `null_value`, numbers as doubles, a table with a `[1]`
/// as a list and any other table (even empty) as a struct; lua-MessagePack packs an empty table
/// as an empty array.
pub(super) fn value_of_pb(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Nil,
        Some(Kind::BoolValue(flag)) => Value::from(*flag),
        Some(Kind::NumberValue(number)) => lua_number(*number),
        Some(Kind::StringValue(text)) => Value::from(text.as_str()),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(value_of_pb).collect()),
        Some(Kind::StructValue(fields)) if fields.fields.is_empty() => Value::Array(Vec::new()),
        Some(Kind::StructValue(fields)) => Value::Map(
            fields
                .fields
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), value_of_pb(value)))
                .collect(),
        ),
    }
}

/// A header or query multi-map, fixed up as MsgPack:1 does (`mp_rpc.lua`, `fix_mmap`): a
/// string becomes a one-element array, `true` (a query flag) an empty array, and an empty
/// result an empty map (the one place Kong sends one).
pub(super) fn multi_map(map: Struct) -> Value {
    Value::Map(
        map.fields
            .into_iter()
            .map(|(name, value)| {
                let values = match value.kind {
                    Some(Kind::StringValue(text)) => Value::Array(vec![Value::from(text)]),
                    Some(Kind::BoolValue(true)) => Value::Array(Vec::new()),
                    other => value_of_pb(&prost_types::Value { kind: other }),
                };
                (Value::from(name), values)
            })
            .collect(),
    )
}

/// A Lua table (as MessagePack) as Kong's `cjson.encode` writes it: compact, `/` escaped as
/// `\/`, numbers as `%.14g`, an empty table as `{}`. Key order is Lua's hash order in Kong, so
/// only the document, not its byte order, can match.
pub(super) fn cjson_encode(value: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_cjson(&mut out, value)?;
    Ok(out)
}

fn write_cjson(out: &mut String, value: &Value) -> Result<(), String> {
    match value {
        Value::Nil => out.push_str("null"),
        Value::Boolean(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Integer(n) => out.push_str(&lua_number_text(n.as_f64().unwrap_or_default())?),
        Value::F32(f) => out.push_str(&lua_number_text(f64::from(*f))?),
        Value::F64(f) => out.push_str(&lua_number_text(*f)?),
        Value::String(_) | Value::Binary(_) => {
            write_cjson_string(out, &text(value).unwrap_or_default())
        }
        Value::Array(items) if items.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_cjson(out, item)?;
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let key = match key {
                    Value::String(_) | Value::Binary(_) => text(key).unwrap_or_default(),
                    Value::Integer(_) | Value::F64(_) => {
                        let mut number = String::new();
                        write_cjson(&mut number, key)?;
                        number
                    }
                    other => return Err(format!("table key {other} cannot be JSON")),
                };
                write_cjson_string(out, &key);
                out.push(':');
                write_cjson(out, item)?;
            }
            out.push('}');
        }
        Value::Ext(..) => return Err("a MessagePack ext value has no Lua equivalent".into()),
    }
    Ok(())
}

fn write_cjson_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as cjson prints it (`%.14g`); cjson refuses infinities and NaN.
fn lua_number_text(number: f64) -> Result<String, String> {
    if !number.is_finite() {
        return Err(format!("cannot serialise number {number}"));
    }
    if number == 0.0 {
        return Ok(if number.is_sign_negative() { "-0" } else { "0" }.into());
    }
    // %.14g: 14 significant digits, scientific below 1e-4 or from 1e14, trailing zeros cut.
    let scientific = format!("{number:.13e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let trim = |digits: &str| -> String {
        if digits.contains('.') {
            digits
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            digits.to_string()
        }
    };
    Ok(if !(-4..14).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        trim(&format!("{number:.*}", (13 - exponent) as usize))
    })
}
