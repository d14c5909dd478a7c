//! Decoding Kong's answers into Rust types, tolerant of how Kong's lua-MessagePack encodes Lua
//! values (an empty table as an empty array, an integral number as an integer).

pub use super::de::decode;
use rmpv::Value;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

/// Kong's multi-map for query arguments: every name maps to all its values, in order. Names
/// are case-sensitive (headers are [`Headers`](super::Headers), whose names are not).
pub type MultiMap = BTreeMap<String, Vec<String>>;

/// Text from a msgpack `str` or `bin`. Kong does not guarantee UTF-8 (header values are raw
/// bytes); invalid sequences become U+FFFD rather than failing the whole call.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

pub(crate) fn optional_string(value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Nil => Ok(None),
        other => text(&other)
            .map(Some)
            .ok_or_else(|| format!("{other} where a string or nothing was expected")),
    }
}

pub(crate) fn string(value: Value) -> Result<String, String> {
    optional_string(value)?.ok_or_else(|| "nothing where a string was expected".to_string())
}

/// An integer; Kong sends integral numbers as ints, but accept an integral float too.
pub(crate) fn integer(value: Value) -> Result<i64, String> {
    match &value {
        Value::Integer(i) => i.as_i64(),
        Value::F64(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Some(*f as i64),
        _ => None,
    }
    .ok_or_else(|| format!("{value} where an integer was expected"))
}

/// Decodes a multi-map: values are arrays of strings, or a single string; an empty table may
/// arrive as an empty array. `true` (a query flag) contributes no value.
pub(crate) fn multi_map(value: Value) -> Result<MultiMap, String> {
    let entries = match value {
        Value::Map(entries) => entries,
        Value::Array(items) if items.is_empty() => Vec::new(),
        Value::Nil => Vec::new(),
        other => return Err(format!("{other} where a map of lists was expected")),
    };
    let mut map = MultiMap::new();
    for (name, values) in entries {
        let name = text(&name).ok_or_else(|| format!("map key {name} that is not a string"))?;
        let values = match values {
            Value::Array(items) => items.iter().filter_map(text).collect(),
            single => text(&single).into_iter().collect(),
        };
        map.insert(name, values);
    }
    Ok(map)
}

/// `T` decoded from Kong's value, `None` when Kong returned nothing.
pub(crate) fn optional<T: DeserializeOwned>(value: Value) -> Result<Option<T>, String> {
    match value {
        Value::Nil => Ok(None),
        other => decode(other).map(Some),
    }
}

/// A `true`-or-nothing result: whether Kong did it.
pub(crate) fn done(value: Value) -> Result<bool, String> {
    match value {
        Value::Nil => Ok(false),
        Value::Boolean(done) => Ok(done),
        other => Err(format!("{other} where true or nothing was expected")),
    }
}

pub(crate) fn boolean(value: Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("{value} where a boolean was expected"))
}

/// A Lua number: a float, or an integer for an integral value.
pub(crate) fn number(value: Value) -> Result<f64, String> {
    optional_number(value)?.ok_or_else(|| "nothing where a number was expected".to_string())
}

pub(crate) fn optional_number(value: Value) -> Result<Option<f64>, String> {
    match &value {
        Value::Nil => Ok(None),
        Value::Integer(i) => Ok(i.as_f64()),
        Value::F32(f) => Ok(Some(f64::from(*f))),
        Value::F64(f) => Ok(Some(*f)),
        _ => Err(format!("{value} where a number was expected")),
    }
}

/// A port or a status code: an integer that fits in `u16`.
pub(crate) fn u16_integer(value: Value) -> Result<u16, String> {
    let n = integer(value)?;
    u16::try_from(n).map_err(|_| format!("{n} where a port or status code was expected"))
}

/// Raw bytes: Kong sends bodies as `bin`, but a `str` carries the same Lua string.
pub(crate) fn bytes(value: Value) -> Result<Vec<u8>, String> {
    match value {
        Value::Binary(bytes) => Ok(bytes),
        Value::String(s) => Ok(s.into_bytes()),
        other => Err(format!("{other} where bytes were expected")),
    }
}

/// Positional arguments ending in optional ones. Absent ones at the end are left out; an absent
/// one followed by a present one is sent as Kong's `default` for it, since Kong would drop
/// every argument after a `nil` in `Args` (protocol.md §6.3).
pub(crate) fn with_optional(
    mut args: Vec<Value>,
    optional: Vec<(Option<Value>, Value)>,
) -> Vec<Value> {
    let present = optional
        .iter()
        .rposition(|(value, _)| value.is_some())
        .map_or(0, |last| last + 1);
    args.extend(
        optional
            .into_iter()
            .take(present)
            .map(|(value, default)| value.unwrap_or(default)),
    );
    args
}

/// A serializable argument of `method` as MessagePack for Kong: structs become maps (Lua tables
/// with named fields), as a Lua plugin reading them expects.
pub(crate) fn encode<T: Serialize + ?Sized>(method: &str, value: &T) -> crate::Result<Value> {
    let invalid = |error: &dyn std::fmt::Display| {
        crate::Error::new(crate::ErrorKind::InvalidCall, format!("{method}: {error}"))
    };
    let bytes = rmp_serde::to_vec_named(value).map_err(|error| invalid(&error))?;
    rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|error| invalid(&error))
}

/// Headers decoded from Kong's multi-map.
pub(crate) fn headers(value: Value) -> Result<super::Headers, String> {
    Ok(multi_map(value)?
        .into_iter()
        .flat_map(|(name, values)| values.into_iter().map(move |value| (name.clone(), value)))
        .collect())
}

/// Encodes headers for `set_headers`-style calls.
pub(crate) fn multi_map_value(map: &super::Headers) -> Value {
    Value::Map(
        map.iter()
            .map(|(name, values)| {
                let values = values.iter().map(|v| Value::from(v.as_str())).collect();
                (Value::from(name), Value::Array(values))
            })
            .collect(),
    )
}

/// Encodes query arguments for `kong.service.request.set_query`: an empty list is a flag
/// (`?name`, Lua's `true`), as `kong.request.get_query` reports one.
pub(crate) fn query_value(args: &MultiMap) -> Value {
    Value::Map(
        args.iter()
            .map(|(name, values)| {
                let value = if values.is_empty() {
                    Value::Boolean(true)
                } else {
                    Value::Array(values.iter().map(|v| Value::from(v.as_str())).collect())
                };
                (Value::from(name.as_str()), value)
            })
            .collect(),
    )
}

/// Bytes as Kong should see them: `str` when they are UTF-8 (what lua-MessagePack itself sends),
/// `bin` otherwise. Kong turns both into the same Lua string.
pub(crate) fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::Binary(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_and_ints_are_both_integers() {
        assert_eq!(integer(Value::from(200)), Ok(200));
        assert_eq!(integer(Value::F64(200.0)), Ok(200));
        assert!(integer(Value::F64(1.5)).is_err());
    }

    #[test]
    fn multi_map_accepts_empty_array_and_single_strings() {
        assert_eq!(multi_map(Value::Array(vec![])), Ok(MultiMap::new()));
        let map = multi_map(Value::Map(vec![
            (
                Value::from("a"),
                Value::Array(vec![Value::from("1"), Value::from("2")]),
            ),
            (Value::from("b"), Value::from("x")),
            (Value::from("debug"), Value::Array(vec![])),
        ]))
        .unwrap();
        assert_eq!(map["a"], vec!["1", "2"]);
        assert_eq!(map["b"], vec!["x"]);
        assert!(map["debug"].is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        // fixstr of 2 bytes, the second not UTF-8: how Kong may send a header value.
        let value = rmpv::decode::read_value(&mut &[0xa2, b'a', 0xff][..]).unwrap();
        assert_eq!(optional_string(value), Ok(Some("a\u{fffd}".to_string())));
    }
}
