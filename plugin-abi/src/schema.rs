//! Kong schemas derived from Rust types (spec §4.4).
//!
//! `#[derive(Schema)]` on a config struct implements [`Schema`] as a Kong `record` whose fields
//! come from the struct's fields, each through the [`Schema`] impl of its type.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A Rust type that has a Kong field definition.
pub trait Schema {
    /// The field definition, e.g. `{"type": "string"}` or a whole `record`.
    fn schema() -> Value;

    /// Whether a struct field of this type is `required`: everything but `Option` is.
    const REQUIRED: bool = true;
}

macro_rules! simple {
    ($kind:literal: $($ty:ty),*) => {$(
        impl Schema for $ty {
            fn schema() -> Value {
                json!({ "type": $kind })
            }
        }
    )*};
}

simple!("string": String, Box<str>);
simple!("boolean": bool);
simple!("integer": i8, i16, i32, i64, isize);
simple!("number": f32, f64);

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl Schema for $ty {
            fn schema() -> Value {
                // Kong integers are Lua numbers: keep the range a Rust unsigned can hold.
                let max = (<$ty>::MAX as u64).min(1 << 53);
                json!({ "type": "integer", "between": [0, max] })
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);

impl<T: Schema> Schema for Option<T> {
    fn schema() -> Value {
        T::schema()
    }
    const REQUIRED: bool = false;
}

impl<T: Schema> Schema for Vec<T> {
    fn schema() -> Value {
        json!({ "type": "array", "elements": T::schema() })
    }
}

macro_rules! sets {
    ($($set:ident),*) => {$(
        impl<T: Schema> Schema for $set<T> {
            fn schema() -> Value {
                json!({ "type": "set", "elements": T::schema() })
            }
        }
    )*};
}

sets!(HashSet, BTreeSet);

macro_rules! maps {
    ($($map:ident),*) => {$(
        impl<T: Schema> Schema for $map<String, T> {
            fn schema() -> Value {
                json!({ "type": "map", "keys": { "type": "string" }, "values": T::schema() })
            }
        }
    )*};
}

maps!(HashMap, BTreeMap);

/// One entry of a record's `fields`, as `#[derive(Schema)]` writes it.
#[doc(hidden)]
pub fn field<T: Schema>(name: &str, default: Option<Value>, description: Option<&str>) -> Value {
    let mut definition = T::schema();
    let attributes = definition
        .as_object_mut()
        .expect("a Schema impl returns a JSON object");
    if T::REQUIRED {
        attributes.insert("required".into(), Value::Bool(true));
    }
    if let Some(default) = default {
        attributes.insert("default".into(), default);
    }
    if let Some(description) = description {
        attributes.insert("description".into(), Value::from(description));
    }
    let mut entry = Map::new();
    entry.insert(name.into(), definition);
    Value::Object(entry)
}

/// A `record` from its field entries.
#[doc(hidden)]
pub fn record(fields: Vec<Value>) -> Value {
    json!({ "type": "record", "fields": fields })
}

/// The whole plugin schema Kong reads from the query command.
pub fn plugin_schema(name: &str, config: Value) -> Value {
    json!({ "name": name, "fields": [{ "config": config }] })
}

/// Fills in what Kong would have filled in from `schema` before sending a config, and undoes
/// lua-cjson's empty-table ambiguity (`{}` for an empty array, `[]` for an empty map).
pub(crate) fn normalize(schema: &Value, value: &mut Value) {
    match schema["type"].as_str() {
        Some("record") => {
            let Some(object) = value.as_object_mut() else {
                return;
            };
            for entry in schema["fields"].as_array().into_iter().flatten() {
                let Some((name, definition)) = entry.as_object().and_then(|e| e.iter().next())
                else {
                    continue;
                };
                let slot = object.get(name).filter(|v| !v.is_null());
                match (slot, definition.get("default")) {
                    (None, Some(default)) => {
                        object.insert(name.clone(), default.clone());
                    }
                    (None, None) if definition["type"] == "record" => {
                        let mut nested = Value::Object(Map::new());
                        normalize(definition, &mut nested);
                        if nested.as_object().is_some_and(|n| !n.is_empty()) {
                            object.insert(name.clone(), nested);
                        }
                    }
                    (None, None) => {}
                    (Some(_), _) => {
                        if let Some(present) = object.get_mut(name) {
                            normalize(definition, present);
                        }
                    }
                }
            }
        }
        Some("array" | "set") => {
            if value.as_object().is_some_and(Map::is_empty) {
                *value = Value::Array(Vec::new());
            }
            for element in value.as_array_mut().into_iter().flatten() {
                normalize(&schema["elements"], element);
            }
        }
        Some("map") => {
            if value.as_array().is_some_and(Vec::is_empty) {
                *value = Value::Object(Map::new());
            }
            for element in value
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                normalize(&schema["values"], element);
            }
        }
        _ => {}
    }
}
