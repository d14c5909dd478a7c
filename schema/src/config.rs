//! Turning the config JSON Kong sends into the plugin's config type (protocol.md §7.1): what Kong
//! does to a config before storing it (defaults), undoing lua-cjson's quirks, and Kong's
//! validation of the schema's constraints, so a config Kong would refuse is refused here too.

use crate::{is_integer, lua_pattern, single_entry, Schema};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;

/// Decodes `json` (as Kong sends it, bookkeeping keys and all) into `C`: keeps only the
/// schema's own top-level fields (dropping `__key__`, `__seq__`, `route_id`, …), applies the
/// schema's defaults, validates the schema's constraints, then deserializes. The error names
/// the offending field.
pub fn decode<C: DeserializeOwned + Schema>(json: &str) -> Result<C, String> {
    let mut value: Value =
        serde_json::from_str(json).map_err(|error| format!("config is not valid JSON: {error}"))?;
    let Value::Object(object) = &mut value else {
        return Err(format!("config must be a JSON object, got {value}"));
    };
    let schema = C::schema();
    if schema["type"] == "record" {
        object.retain(|key, _| record_fields(&schema).any(|(name, _)| name == key));
    }
    normalize(&schema, &mut value);
    validate(&schema, &value)
        .and_then(|()| {
            serde_path_to_error::deserialize(value).map_err(|error| {
                let path = error.path().to_string();
                Invalid {
                    path: if path == "." { String::new() } else { path },
                    message: error.into_inner().to_string(),
                }
            })
        })
        .map_err(|invalid| format!("invalid config: {invalid}"))
}

/// Refuses a config a plugin author enters with a top-level field its schema lacks, in the words
/// of Kong's Admin API (`validation_errors.UNKNOWN` in Kong's `kong/db/schema/init.lua`):
/// `invalid config: field `extra`: unknown field`. [`decode`] drops such fields instead, as the
/// host must for the keys Kong adds to what it sends (`kong_added`); nested records are refused
/// by `decode` itself.
pub fn check_entered_fields<C: Schema>(json: &str, kong_added: &[&str]) -> Result<(), String> {
    let schema = C::schema();
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(json) else {
        // Not an object: `decode` says what is wrong with it.
        return Ok(());
    };
    let unknown = object.keys().find(|key| {
        !kong_added.contains(&key.as_str())
            && !record_fields(&schema).any(|(name, _)| name == key.as_str())
    });
    match unknown {
        Some(key) if schema["type"] == "record" => Err(format!(
            "invalid config: {}",
            Invalid::new(UNKNOWN).within(key)
        )),
        _ => Ok(()),
    }
}

/// The `(name, definition)` pairs of a record definition's `fields`.
fn record_fields(definition: &Value) -> impl Iterator<Item = (&str, &Value)> {
    definition["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(single_entry)
}

/// Whether Kong insists on a value: `required: true`, or a record without `required` (Kong
/// makes the records of plugin schemas required unless they say otherwise).
fn is_required(definition: &Value) -> bool {
    match &definition["required"] {
        Value::Bool(required) => *required,
        _ => definition["type"] == "record",
    }
}

fn default_of(definition: &Value) -> Option<&Value> {
    definition
        .get("default")
        .filter(|default| !default.is_null())
}

/// Fills in what Kong would have filled in from `schema` before sending a config (defaults;
/// required records expanded with their own defaults), drops nulls (Kong strips them, so
/// missing and `null` mean the same), and undoes lua-cjson's quirks: `{}` for an empty array,
/// `[]` for an empty map or record, integers in float notation.
fn normalize(schema: &Value, value: &mut Value) {
    match schema["type"].as_str() {
        Some("record") => {
            if value.as_array().is_some_and(Vec::is_empty) {
                *value = Value::Object(Map::new());
            }
            let Some(object) = value.as_object_mut() else {
                return;
            };
            for (name, definition) in record_fields(schema) {
                if let Some(present) = object.get_mut(name).filter(|v| !v.is_null()) {
                    normalize(definition, present);
                    continue;
                }
                object.remove(name);
                let filled = match default_of(definition) {
                    Some(default) => Some(default.clone()),
                    None if definition["type"] == "record" && is_required(definition) => {
                        Some(Value::Object(Map::new()))
                    }
                    None => None,
                };
                if let Some(mut filled) = filled {
                    normalize(definition, &mut filled);
                    object.insert(name.to_string(), filled);
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
            for element in value.as_object_mut().into_iter().flat_map(Map::values_mut) {
                normalize(&schema["values"], element);
            }
        }
        Some("integer") => {
            // lua-cjson prints numbers with 14 significant digits: 1e+15 for 10^15.
            let integral = value
                .as_f64()
                .filter(|f| value.is_f64() && f.fract() == 0.0 && f.abs() < 9.2e18);
            if let Some(integral) = integral {
                *value = if integral < 0.0 {
                    Value::from(integral as i64)
                } else {
                    Value::from(integral as u64)
                };
            }
        }
        _ => {}
    }
}

/// Where and why a value breaks its field definition, worded like Kong's validation errors.
pub(crate) struct Invalid {
    /// `a.b[2].c`, empty for the value itself.
    path: String,
    message: String,
}

impl Invalid {
    fn new(message: impl Into<String>) -> Self {
        Invalid {
            path: String::new(),
            message: message.into(),
        }
    }

    /// The error, seen from the value holding this one at `segment` (a key or `[index]`).
    fn within(mut self, segment: &str) -> Self {
        let separator = if self.path.is_empty() || self.path.starts_with('[') {
            ""
        } else {
            "."
        };
        self.path = format!("{segment}{separator}{}", self.path);
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "field `{}`: {}", self.path, self.message)
        }
    }
}

const REQUIRED: &str = "required field missing";
const UNKNOWN: &str = "unknown field";

/// Validates a (non-null) value against a field definition the way Kong's
/// `Schema:validate_field` does: the type, then each constraint in Kong's order. Kong's own
/// quirks are kept: a string must not be empty unless `len_min` says otherwise, a
/// `referenceable` string holding a vault reference (`{vault://…}`) skips the constraints,
/// `err` replaces a constraint's message. Not checked: `is_regex` (PCRE),
/// `mutually_exclusive_subsets`, and `foreign`, `json`, `function` values.
pub(crate) fn validate(definition: &Value, value: &Value) -> Result<(), Invalid> {
    let kind = definition["type"].as_str().unwrap_or_default();
    let expected = match kind {
        "array" | "set" => {
            let elements = value.as_array().ok_or_else(|| {
                Invalid::new(if kind == "set" {
                    "expected a set"
                } else {
                    "expected an array"
                })
            })?;
            for (index, element) in elements.iter().enumerate() {
                validate_present(&definition["elements"], element)
                    .map_err(|invalid| invalid.within(&format!("[{index}]")))?;
            }
            None
        }
        "map" => {
            let entries = value
                .as_object()
                .ok_or_else(|| Invalid::new("expected a map"))?;
            for (key, entry) in entries {
                validate(&definition["keys"], &Value::from(key.as_str()))
                    .and_then(|()| validate_present(&definition["values"], entry))
                    .map_err(|invalid| invalid.within(key))?;
            }
            None
        }
        "record" => {
            let object = value
                .as_object()
                .ok_or_else(|| Invalid::new("expected a record"))?;
            validate_record(definition, object)?;
            None
        }
        "integer" => (!is_integer(value)).then_some("expected an integer"),
        "number" => (!value.is_number()).then_some("expected a number"),
        "boolean" => (!value.is_boolean()).then_some("expected a boolean"),
        "string" => match value.as_str() {
            None => Some("expected a string"),
            Some(text) if definition["referenceable"] == true && is_reference(text) => {
                return Ok(())
            }
            Some(_) => None,
        },
        _ => None,
    };
    if let Some(expected) = expected {
        return Err(Invalid::new(expected));
    }
    check_constraints(definition, value).map_err(|message| {
        Invalid::new(match definition["err"].as_str() {
            Some(err) => err.to_string(),
            None => message,
        })
    })
}

fn validate_present(definition: &Value, value: &Value) -> Result<(), Invalid> {
    if value.is_null() {
        return Err(Invalid::new(REQUIRED));
    }
    validate(definition, value)
}

fn validate_record(definition: &Value, object: &Map<String, Value>) -> Result<(), Invalid> {
    if let Some(unknown) = object
        .keys()
        .find(|key| !record_fields(definition).any(|(name, _)| name == key.as_str()))
    {
        return Err(Invalid::new(UNKNOWN).within(unknown));
    }
    for (name, field) in record_fields(definition) {
        let checked = match object.get(name).filter(|value| !value.is_null()) {
            Some(value) => validate(field, value),
            // Kong fills a default in, and has checked the default itself.
            None if default_of(field).is_some() || !is_required(field) => Ok(()),
            // Kong expands a missing required record, with its nested defaults.
            None if field["type"] == "record" => validate(field, &Value::Object(Map::new())),
            None => Err(Invalid::new(REQUIRED)),
        };
        checked.map_err(|invalid| invalid.within(name))?;
    }
    Ok(())
}

/// Kong's `kong.vault.is_reference`.
fn is_reference(text: &str) -> bool {
    text.starts_with("{vault:") && text.ends_with('}')
}

/// A constraint: `Err(message)` if `value` breaks it with the given argument.
type Constraint = fn(value: &Value, argument: &Value) -> Result<(), String>;

/// Kong's validators, in Kong's order (`Schema.validators_order`).
const CONSTRAINTS: &[(&str, Constraint)] = &[
    ("eq", |value, wanted| {
        ensure(lua_eq(value, wanted), || {
            format!("value must be {}", show(wanted))
        })
    }),
    ("ne", |value, unwanted| {
        ensure(!lua_eq(value, unwanted), || {
            format!("value must not be {}", show(value))
        })
    }),
    ("not_one_of", |value, options| {
        ensure(!listed(value, options), || {
            format!("must not be one of: {}", show_all(options))
        })
    }),
    ("one_of", |value, options| {
        ensure(listed(value, options), || {
            format!("expected one of: {}", show_all(options))
        })
    }),
    ("gt", |value, limit| {
        ensure(number(value)? > number(limit)?, || {
            format!("value must be greater than {}", show(limit))
        })
    }),
    ("timestamp", |value, _| {
        ensure(number(value)? > 0.0, || "expected a valid timestamp".into())
    }),
    ("uuid", |value, _| {
        ensure(is_uuid(text(value)?), || "expected a valid UUID".into())
    }),
    ("between", |value, limits| {
        let (min, max) = (&limits[0], &limits[1]);
        let n = number(value)?;
        ensure(n >= number(min)? && n <= number(max)?, || {
            format!("value should be between {} and {}", show(min), show(max))
        })
    }),
    ("len_eq", |value, n| {
        ensure(length(value)? == count(n)?, || {
            format!("length must be {}", show(n))
        })
    }),
    ("len_min", |value, n| {
        ensure(length(value)? >= count(n)?, || {
            format!("length must be at least {}", show(n))
        })
    }),
    ("len_max", |value, n| {
        ensure(length(value)? <= count(n)?, || {
            format!("length must be at most {}", show(n))
        })
    }),
    ("starts_with", |value, prefix| {
        ensure(text(value)?.starts_with(text(prefix)?), || {
            format!("should start with: {}", show(prefix))
        })
    }),
    ("not_match", |value, pattern| {
        ensure(!lua_match(value, pattern)?, || {
            format!("invalid value: {}", show(value))
        })
    }),
    ("match_none", |value, rules| {
        for rule in list(rules)? {
            if lua_match(value, &rule["pattern"])? {
                return Err(show(&rule["err"]));
            }
        }
        Ok(())
    }),
    ("match", |value, pattern| {
        ensure(lua_match(value, pattern)?, || {
            format!("invalid value: {}", show(value))
        })
    }),
    ("match_all", |value, rules| {
        for rule in list(rules)? {
            if !lua_match(value, &rule["pattern"])? {
                return Err(show(&rule["err"]));
            }
        }
        Ok(())
    }),
    ("match_any", |value, rule| {
        for pattern in list(&rule["patterns"])? {
            if lua_match(value, pattern)? {
                return Ok(());
            }
        }
        Err(show(&rule["err"]))
    }),
    ("contains", |value, wanted| {
        ensure(listed(wanted, value), || {
            format!("expected to contain: {}", show(wanted))
        })
    }),
];

fn check_constraints(definition: &Value, value: &Value) -> Result<(), String> {
    for (name, constraint) in CONSTRAINTS {
        match definition.get(*name).filter(|argument| !argument.is_null()) {
            Some(argument) => constraint(value, argument)?,
            // Kong: "empty strings are not accepted by default".
            None if *name == "len_min" && value.is_string() => constraint(value, &1.into())?,
            None => {}
        }
    }
    Ok(())
}

fn ensure(holds: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(message())
    }
}

/// Lua's `==` on decoded JSON: numbers by value (`1 == 1.0`).
fn lua_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

fn listed(value: &Value, options: &Value) -> bool {
    options
        .as_array()
        .is_some_and(|options| options.iter().any(|option| lua_eq(value, option)))
}

/// A value as Lua's `tostring` shows it in Kong's messages: strings unquoted.
fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn show_all(options: &Value) -> String {
    let options = options.as_array().map(Vec::as_slice).unwrap_or_default();
    options.iter().map(show).collect::<Vec<_>>().join(", ")
}

fn number(value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .ok_or_else(|| format!("expected a number, not {value}"))
}

fn text(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, not {value}"))
}

fn list(value: &Value) -> Result<&Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("expected an array, not {value}"))
}

fn count(value: &Value) -> Result<usize, String> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("expected a length, not {value}"))
}

/// Lua's `#`: bytes of a string, entries of a table.
fn length(value: &Value) -> Result<usize, String> {
    match value {
        Value::String(text) => Ok(text.len()),
        Value::Array(elements) => Ok(elements.len()),
        Value::Object(entries) => Ok(entries.len()),
        other => Err(format!("{other} has no length")),
    }
}

fn lua_match(value: &Value, pattern: &Value) -> Result<bool, String> {
    let pattern = text(pattern)?;
    lua_pattern::matches(text(value)?.as_bytes(), pattern.as_bytes())
        .map_err(|error| format!("invalid pattern {pattern:?}: {error}"))
}

/// Kong's UUID check: 8-4-4-4-12 hex digits, any case.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
