//! Values as Kong's Lua side sees them: what a MessagePack value becomes in Lua and how Kong
//! packs Lua values back (protocol.md §6.2, §6.3), cjson's view of Lua tables, and Lua's
//! `tostring`.

use rmpv::Value;
use serde_json::Value as Json;

/// Integers of magnitude below this are packed as integers by lua-MessagePack.
const MAX_EXACT: f64 = 9_007_199_254_740_991.0;

/// A Lua number as Kong packs it: integral values as integers, anything else as float64.
pub(crate) fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < MAX_EXACT {
        Value::from(n as i64)
    } else {
        Value::F64(n)
    }
}

/// The Lua number a MessagePack number becomes (every Lua number is a double).
pub(crate) fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => i.as_f64(),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        _ => None,
    }
}

/// The bytes of a Lua string: MessagePack `str` and `bin` both become one.
pub(crate) fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// A Lua string as text, invalid UTF-8 replaced.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    as_bytes(value).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

pub(crate) fn is_table(value: &Value) -> bool {
    matches!(value, Value::Map(_) | Value::Array(_))
}

/// Lua's `type()` of the value a MessagePack value becomes.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil | Value::Ext(..) => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "number",
        Value::String(_) | Value::Binary(_) => "string",
        Value::Array(_) | Value::Map(_) => "table",
    }
}

/// A table's entries as (key, value) pairs, arrays keyed 1..n like Lua sees them.
pub(crate) fn entries(value: &Value) -> Vec<(Value, Value)> {
    match value {
        Value::Map(entries) => entries.clone(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (Value::from(i + 1), item.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A Lua string from raw bytes: `str` even when the bytes are not UTF-8, as Kong sends them.
pub(crate) fn string(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(error) => {
            // rmpv builds non-UTF-8 strings only when decoding: decode a str32 frame.
            let bytes = error.into_bytes();
            let mut frame = vec![0xdb];
            frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            frame.extend_from_slice(&bytes);
            rmpv::decode::read_value(&mut frame.as_slice()).unwrap_or(Value::Binary(bytes))
        }
    }
}

/// What a value the plugin sent looks like after Kong decoded it into Lua and packed it again:
/// `bin` becomes `str`, integral floats integers, `nil` keys and values vanish, a table whose
/// keys are exactly 1..n becomes an array and an empty table an empty array.
pub(crate) fn through_lua(value: Value) -> Value {
    match value {
        Value::Binary(bytes) => string(bytes),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            as_number(&value).map_or(Value::Nil, number)
        }
        Value::Ext(..) => Value::Nil,
        Value::Array(_) | Value::Map(_) => table(entries(&value)),
        other => other,
    }
}

fn table(entries: Vec<(Value, Value)>) -> Value {
    let entries: Vec<(Value, Value)> = entries
        .into_iter()
        .map(|(key, value)| (through_lua(key), through_lua(value)))
        .filter(|(key, value)| !key.is_nil() && !value.is_nil())
        .collect();
    let mut slots: Vec<Option<Value>> = vec![None; entries.len()];
    for (key, value) in &entries {
        match key.as_u64() {
            Some(index) if index >= 1 && index as usize <= slots.len() => {
                slots[index as usize - 1] = Some(value.clone());
            }
            _ => return Value::Map(entries),
        }
    }
    match slots.into_iter().collect::<Option<Vec<_>>>() {
        Some(items) => Value::Array(items),
        None => Value::Map(entries),
    }
}

/// A JSON document as cjson decodes it and Kong packs it: `null` is cjson's sentinel (packed as
/// `nil`, kept in place), empty objects and arrays are empty Lua tables (packed as `[]`).
pub(crate) fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if (i as f64).abs() < MAX_EXACT => Value::from(i),
            _ => n.as_f64().map_or(Value::Nil, number),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(map) if map.is_empty() => Value::Array(Vec::new()),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(key, value)| (Value::from(key.as_str()), from_json(value)))
                .collect(),
        ),
    }
}

/// What `cjson.encode` makes of the Lua value: empty tables are objects, integral numbers print
/// without a fraction, number keys become strings.
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil | Value::Ext(..) => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            match number(as_number(value).unwrap_or(0.0)) {
                Value::Integer(i) => i.as_i64().map_or(Json::Null, Json::from),
                other => as_number(&other)
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number),
            }
        }
        Value::String(_) | Value::Binary(_) => Json::String(as_text(value).unwrap_or_default()),
        Value::Array(items) if items.is_empty() => Json::Object(serde_json::Map::new()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| (tostring(key), to_json(value)))
                .collect(),
        ),
    }
}

/// Lua's `tostring`: what `kong.log.*` prints for each argument.
pub(crate) fn tostring(value: &Value) -> String {
    match value {
        Value::Nil | Value::Ext(..) => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
            format_g14(as_number(value).unwrap_or(0.0))
        }
        Value::String(_) | Value::Binary(_) => as_text(value).unwrap_or_default(),
        Value::Array(_) | Value::Map(_) => "table: 0x00000000".into(),
    }
}

/// C's `%.14g`, the format LuaJIT's `tostring` uses for numbers.
fn format_g14(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = format!("{n:.13e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..14).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mantissa), exponent.abs())
    } else {
        let decimals = (13 - exponent) as usize;
        trim_fraction(&format!("{n:.decimals$}")).to_string()
    }
}

fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// Packs a value the way lua-MessagePack does: smallest integer encodings, float64 only,
/// `str` without str8, `bin` for raw bodies.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write(&mut out, value);
    out
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Nil | Value::Ext(..) => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => {
            if let Some(n) = i.as_u64() {
                write_unsigned(out, n);
            } else if let Some(n) = i.as_i64() {
                write_signed(out, n);
            }
        }
        Value::F32(_) | Value::F64(_) => {
            out.push(0xcb);
            out.extend_from_slice(&as_number(value).unwrap_or(0.0).to_be_bytes());
        }
        Value::String(s) => {
            write_length(out, s.as_bytes().len(), (0xa0, 31), None, 0xda, 0xdb);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Binary(b) => {
            write_length(out, b.len(), (0xc4, 0), Some(0xc4), 0xc5, 0xc6);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            write_length(out, items.len(), (0x90, 15), None, 0xdc, 0xdd);
            items.iter().for_each(|item| write(out, item));
        }
        Value::Map(entries) => {
            write_length(out, entries.len(), (0x80, 15), None, 0xde, 0xdf);
            for (key, value) in entries {
                write(out, key);
                write(out, value);
            }
        }
    }
}

/// A length header: the fix form up to its maximum, then the 8-bit form when the type has one,
/// then the 16- and 32-bit forms.
fn write_length(
    out: &mut Vec<u8>,
    len: usize,
    (fix, fix_max): (u8, usize),
    marker8: Option<u8>,
    marker16: u8,
    marker32: u8,
) {
    match (len, marker8) {
        (len, None) if len <= fix_max => out.push(fix | len as u8),
        (len, Some(marker)) if len <= 0xff => out.extend_from_slice(&[marker, len as u8]),
        (len, _) if len <= 0xffff => {
            out.push(marker16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (len, _) => {
            out.push(marker32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

fn write_unsigned(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write_signed(out: &mut Vec<u8>, n: i64) {
    match n {
        -32..=-1 => out.push(n as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, n as u8]),
        -32_768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2_147_483_648..=-32_769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_packed_like_lua_messagepack() {
        assert_eq!(encode(&number(200.0)), [0xcc, 200]);
        assert_eq!(encode(&number(-1.0)), [0xff]);
        assert_eq!(encode(&number(1.5))[0], 0xcb);
        assert_eq!(encode(&Value::F32(2.0))[0], 0xcb);
        assert_eq!(encode(&Value::from(-200)), [0xd1, 0xff, 0x38]);
    }

    #[test]
    fn strings_never_use_str8_and_bodies_are_bin() {
        let text = "x".repeat(40);
        assert_eq!(encode(&Value::from(text.as_str()))[..3], [0xda, 0, 40]);
        assert_eq!(
            encode(&Value::Binary(b"hi".to_vec())),
            [0xc4, 2, b'h', b'i']
        );
        assert_eq!(encode(&Value::Nil), [0xc0]);
    }

    #[test]
    fn tables_round_trip_through_lua() {
        let sparse = Value::Array(vec![Value::from(1), Value::Nil, Value::from(3)]);
        assert_eq!(
            through_lua(sparse),
            Value::Map(vec![
                (Value::from(1), Value::from(1)),
                (Value::from(3), Value::from(3))
            ])
        );
        let keyed = Value::Map(vec![
            (Value::from(2), Value::from("b")),
            (Value::from(1), Value::from("a")),
        ]);
        assert_eq!(
            through_lua(keyed),
            Value::Array(vec![Value::from("a"), Value::from("b")])
        );
        assert_eq!(through_lua(Value::Map(vec![])), Value::Array(vec![]));
        assert_eq!(through_lua(Value::F64(2.0)), Value::from(2));
        assert!(
            matches!(through_lua(Value::Binary(vec![b'a', 0xff])), Value::String(s) if s.as_bytes() == [b'a', 0xff]),
            "bin becomes str, invalid UTF-8 and all"
        );
    }

    #[test]
    fn tostring_matches_luajit() {
        assert_eq!(tostring(&Value::from(200)), "200");
        assert_eq!(tostring(&Value::F64(0.1)), "0.1");
        assert_eq!(tostring(&Value::F64(1e15)), "1e+15");
        assert_eq!(tostring(&Value::F64(1.5e-7)), "1.5e-07");
        assert_eq!(tostring(&Value::F64(123456.789)), "123456.789");
        assert_eq!(tostring(&Value::Nil), "nil");
        assert_eq!(tostring(&Value::Boolean(true)), "true");
    }
}
