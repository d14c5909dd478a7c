//! # kong-rust-schema
//!
//! Kong plugin schemas derived from Rust types, shared by `kong-rust-pdk`
//! (which re-exports it as `kong_rust_pdk::schema`, with the derive and examples) and
//! `kong-rust-host` (which checks every plugin's schema with [`check_plugin_schema`] when it
//! loads it, without depending on the PDK).
//!
//! * [`Schema`]: a Rust type's Kong field definition; implemented here for the standard types,
//!   by `#[derive(Schema)]` for config structs and enums.
//! * [`check_plugin_schema`]: a whole plugin schema against the rules Kong's metaschema applies
//!   when it loads an external plugin.
//! * [`decode`]: the config JSON Kong sends into the config type, with Kong's defaults and
//!   Kong's validation of the schema's constraints; the error names the field.
//!
//! ```
//! use kong_rust_schema::{check_plugin_schema, plugin_schema, Schema};
//!
//! let schema = plugin_schema("p", serde_json::json!({
//!     "type": "record",
//!     "fields": [{ "retries": <u8 as Schema>::schema() }],
//! }));
//! assert!(check_plugin_schema(&schema).is_ok());
//! ```

#![warn(missing_docs)]

mod config;
mod lua_pattern;

use crate::config::validate;
pub use config::{check_entered_fields, decode};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The Kong type of a field definition (its `"type"`), for the types config fields use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `"string"`.
    String,
    /// `"integer"`.
    Integer,
    /// `"number"`.
    Number,
    /// `"boolean"`.
    Boolean,
    /// `"array"`: ordered `elements`.
    Array,
    /// `"set"`: distinct `elements`.
    Set,
    /// `"map"`: string `keys` to `values`.
    Map,
    /// `"record"`: named `fields`.
    Record,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::String,
        Kind::Integer,
        Kind::Number,
        Kind::Boolean,
        Kind::Array,
        Kind::Set,
        Kind::Map,
        Kind::Record,
    ];

    /// The kind Kong calls `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name Kong uses, e.g. `"integer"`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Array => "array",
            Kind::Set => "set",
            Kind::Map => "map",
            Kind::Record => "record",
        }
    }
}

/// A Rust type that has a Kong field definition.
pub trait Schema {
    /// The Kong type of [`Schema::schema`], known at compile time so that `#[derive(Schema)]`
    /// refuses attributes the type cannot have when it compiles. `None` (the default, for
    /// hand-written impls that do not say) defers those checks to when `schema()` runs.
    const KIND: Option<Kind> = None;

    /// Whether a struct field of this type is `required`: everything but `Option` is.
    const REQUIRED: bool = true;

    /// The field definition, e.g. `{"type": "string"}` or a whole `record`.
    fn schema() -> Value;
}

macro_rules! simple {
    ($kind:ident: $($ty:ty),*) => {$(
        impl Schema for $ty {
            const KIND: Option<Kind> = Some(Kind::$kind);
            fn schema() -> Value {
                json!({ "type": Kind::$kind.name() })
            }
        }
    )*};
}

simple!(String: String, Box<str>);
simple!(Boolean: bool);
simple!(Number: f32, f64);

macro_rules! integers {
    ($($ty:ty),*) => {$(
        impl Schema for $ty {
            const KIND: Option<Kind> = Some(Kind::Integer);
            fn schema() -> Value {
                // Kong integers are Lua numbers (doubles), exact up to 2^53: keep to the range
                // both sides hold, so Kong refuses what deserializing would.
                const EXACT: i128 = 1 << 53;
                let min = (<$ty>::MIN as i128).max(-EXACT) as i64;
                let max = (<$ty>::MAX as i128).min(EXACT) as i64;
                json!({ "type": "integer", "between": [min, max] })
            }
        }
    )*};
}

integers!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl<T: Schema> Schema for Option<T> {
    const KIND: Option<Kind> = T::KIND;
    const REQUIRED: bool = false;
    fn schema() -> Value {
        T::schema()
    }
}

impl<T: Schema> Schema for Vec<T> {
    const KIND: Option<Kind> = Some(Kind::Array);
    fn schema() -> Value {
        json!({ "type": "array", "elements": T::schema() })
    }
}

macro_rules! sets {
    ($($set:ident),*) => {$(
        impl<T: Schema> Schema for $set<T> {
            const KIND: Option<Kind> = Some(Kind::Set);
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
            const KIND: Option<Kind> = Some(Kind::Map);
            fn schema() -> Value {
                json!({ "type": "map", "keys": { "type": "string" }, "values": T::schema() })
            }
        }
    )*};
}

maps!(HashMap, BTreeMap);

/// The whole plugin schema Kong reads from the query command.
pub fn plugin_schema(name: &str, config: Value) -> Value {
    json!({ "name": name, "fields": [{ "config": config }] })
}

// ---------------------------------------------------------------------------------------------
// What `#[derive(Schema)]` expands to.

/// One entry of a record's `fields`: `T`'s definition with `required` and the field's
/// attributes (a JSON object) on top.
#[doc(hidden)]
pub fn field<T: Schema>(name: &str, required: bool, attributes: Value) -> Value {
    let mut definition = T::schema();
    if let Some(kind) = T::KIND {
        let declared = definition["type"].as_str();
        assert!(
            declared == Some(kind.name()),
            "the Schema impl of {} has KIND {:?} but its schema() has type {declared:?}",
            std::any::type_name::<T>(),
            kind.name(),
        );
    }
    let object = definition
        .as_object_mut()
        .expect("a Schema impl returns a JSON object");
    object.insert("required".into(), Value::Bool(required));
    if let Value::Object(attributes) = attributes {
        object.extend(attributes);
    }
    let mut entry = Map::new();
    entry.insert(name.into(), definition);
    Value::Object(entry)
}

/// The `record` of a struct named `name` from its field entries, checked the way Kong will
/// check it: this is where what the compiler could not see (attributes on types whose `KIND`
/// is unknown, non-literal defaults, defaults breaking the field's constraints, malformed Lua
/// patterns) panics with a clear message.
#[doc(hidden)]
pub fn record(name: &str, fields: Vec<Value>) -> Value {
    for (field, definition) in fields.iter().filter_map(single_entry) {
        let kind = definition["type"].as_str().and_then(Kind::from_name);
        for attribute in definition.as_object().into_iter().flat_map(Map::keys) {
            assert_attribute(kind, attribute, &format!("{name}.{field}"));
        }
    }
    let record = json!({ "type": "record", "fields": fields });
    if let Err(problem) = check_field(name, &record).and_then(|()| check_patterns(name, &fields)) {
        panic!("derive(Schema) for `{name}` makes a schema Kong would refuse: {problem}");
    }
    record
}

/// The Lua patterns of a record's own fields compile (Kong only finds out when it validates a
/// value, with a Lua error).
fn check_patterns(path: &str, fields: &[Value]) -> Result<(), String> {
    for (name, definition) in fields.iter().filter_map(single_entry) {
        for attribute in ["match", "not_match"] {
            if let Some(pattern) = definition[attribute].as_str() {
                lua_pattern::check(pattern.as_bytes()).map_err(|error| {
                    format!("field `{path}.{name}`: '{attribute}' pattern {pattern:?}: {error}")
                })?;
            }
        }
    }
    Ok(())
}

/// A JSON literal written in a `#[schema(...)]` attribute, for the compile-time type check.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum Literal {
    String,
    Integer,
    Float,
    Boolean,
    Array,
    Object,
}

impl Literal {
    const fn fits(self, kind: Kind) -> bool {
        match self {
            Literal::String => matches!(kind, Kind::String),
            Literal::Integer => matches!(kind, Kind::Integer | Kind::Number),
            Literal::Float => matches!(kind, Kind::Number),
            Literal::Boolean => matches!(kind, Kind::Boolean),
            Literal::Array => matches!(kind, Kind::Array | Kind::Set),
            Literal::Object => matches!(kind, Kind::Map | Kind::Record),
        }
    }

    const fn description(self) -> &'static str {
        match self {
            Literal::String => "a string",
            Literal::Integer => "an integer",
            Literal::Float => "a fractional number",
            Literal::Boolean => "a boolean",
            Literal::Array => "an array",
            Literal::Object => "an object",
        }
    }
}

/// Compile-time check that `attribute` may be put on a field of `kind` (`field` names it in
/// the error): Kong's metaschema rules, and for attributes it leaves open, the types their
/// validators work on. An unknown kind passes (`record` checks again at run time).
#[doc(hidden)]
pub const fn assert_attribute(kind: Option<Kind>, attribute: &str, field: &str) {
    let (Some(kind), Some(types)) = (kind, derive_attribute_types(attribute)) else {
        return;
    };
    if contains(types, kind.name()) {
        return;
    }
    let mut message = ConstMessage::new()
        .push("`")
        .push(field)
        .push("`: field of type '")
        .push(kind.name())
        .push("' cannot have attribute '")
        .push(attribute)
        .push("' (it applies to ");
    let mut i = 0;
    while i < types.len() {
        if i > 0 {
            message = message.push(", ");
        }
        message = message.push(types[i]);
        i += 1;
    }
    message.push(" fields)").panic()
}

/// Compile-time check that a literal written in an attribute fits a field of `kind`; `what`
/// says which literal, e.g. "`default`" or "`one_of` value \"a\"". An unknown kind passes
/// (`record` checks defaults and `one_of` values at run time).
#[doc(hidden)]
pub const fn assert_literal(kind: Option<Kind>, literal: Literal, what: &str, field: &str) {
    let Some(kind) = kind else {
        return;
    };
    if literal.fits(kind) {
        return;
    }
    ConstMessage::new()
        .push("`")
        .push(field)
        .push("`: ")
        .push(what)
        .push(" is ")
        .push(literal.description())
        .push(", which does not fit a field of type '")
        .push(kind.name())
        .push("'")
        .panic()
}

/// A panic message assembled at compile time (a const panic takes a single `&str`).
struct ConstMessage {
    bytes: [u8; 512],
    len: usize,
}

impl ConstMessage {
    const fn new() -> Self {
        ConstMessage {
            bytes: [0; 512],
            len: 0,
        }
    }

    /// Appends `text`, truncated if the message is full.
    const fn push(mut self, text: &str) -> Self {
        let text = text.as_bytes();
        let mut i = 0;
        while i < text.len() && self.len < self.bytes.len() {
            self.bytes[self.len] = text[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    const fn panic(&self) -> ! {
        let (text, _) = self.bytes.split_at(self.len);
        match std::str::from_utf8(text) {
            Ok(text) => panic!("{}", text),
            Err(_) => panic!("derive(Schema): an attribute does not fit the field's Kong type"),
        }
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn contains(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        if same(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

type AttributeTypes = &'static [(&'static str, &'static [&'static str])];

const fn lookup(table: AttributeTypes, attribute: &str) -> Option<&'static [&'static str]> {
    let mut i = 0;
    while i < table.len() {
        if same(table[i].0, attribute) {
            return Some(table[i].1);
        }
        i += 1;
    }
    None
}

/// The types the derive accepts `attribute` on: Kong's rule if it has one, else the types
/// its validator handles; `None` for attributes any type may have.
const fn derive_attribute_types(attribute: &str) -> Option<&'static [&'static str]> {
    match lookup(KONG_ATTRIBUTE_TYPES, attribute) {
        Some(types) => Some(types),
        None => lookup(VALIDATOR_TYPES, attribute),
    }
}

// ---------------------------------------------------------------------------------------------
// Kong's metaschema rules (kong/db/schema/metaschema.lua, Kong 3.x).

/// Field types Kong knows.
const VALID_TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "array", "set", "map", "record", "foreign", "json",
    "function",
];

/// Attributes a field of some types must have.
const REQUIRED_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("array", &["elements"]),
    ("set", &["elements"]),
    ("map", &["keys", "values"]),
    ("record", &["fields"]),
    ("json", &["json_schema"]),
];

const LENGTHS: &[&str] = &["string", "array", "set", "map"];
const NUMBERS: &[&str] = &["number", "integer"];
const STRINGS: &[&str] = &["string"];
const SCALARS: &[&str] = &["string", "number", "integer", "foreign"];

/// The metaschema's `attribute_types`: `field of type 't' cannot have attribute 'a'` unless `t`
/// is listed for `a`.
const KONG_ATTRIBUTE_TYPES: AttributeTypes = &[
    ("between", NUMBERS),
    ("len_eq", LENGTHS),
    ("match", STRINGS),
    ("one_of", &["string", "number", "integer"]),
    ("contains", &["array", "set"]),
    ("is_regex", STRINGS),
    ("timestamp", NUMBERS),
    ("uuid", STRINGS),
    ("unique", SCALARS),
    ("unique_across_ws", SCALARS),
    (
        "abstract",
        &[
            "string", "number", "integer", "record", "array", "set", "map",
        ],
    ),
    ("json_schema", &["json"]),
];

/// Attributes the metaschema takes on any type but whose validators only work on some (Kong
/// raises a Lua error validating, say, `len_min` on a number). The derive refuses them on
/// other types; [`check_plugin_schema`] does not, as Kong does not.
const VALIDATOR_TYPES: AttributeTypes = &[
    ("len_min", LENGTHS),
    ("len_max", LENGTHS),
    ("not_match", STRINGS),
    ("starts_with", STRINGS),
    ("gt", NUMBERS),
    ("referenceable", STRINGS),
    ("encrypted", &["string", "array"]),
];

/// What the value of a field attribute must be.
#[derive(Clone, Copy)]
enum Shape {
    Boolean,
    String,
    Integer,
    Number,
    Array,
    Object,
    Any,
    Between,
    Description,
    OnDelete,
    Function,
}

/// Every attribute a field definition may have (the metaschema's `field_schema`); Kong refuses
/// any other key (`unknown field`). `type`, `default`, `elements`, `keys`, `values` and
/// `fields` have their own checks.
const ATTRIBUTES: &[(&str, Shape)] = &[
    ("type", Shape::Any),
    ("required", Shape::Boolean),
    ("reference", Shape::String),
    ("description", Shape::Description),
    ("examples", Shape::Array),
    ("auto", Shape::Boolean),
    ("unique", Shape::Boolean),
    ("unique_across_ws", Shape::Boolean),
    ("on_delete", Shape::OnDelete),
    ("default", Shape::Any),
    ("abstract", Shape::Boolean),
    ("generate_admin_api", Shape::Boolean),
    ("immutable", Shape::Boolean),
    ("err", Shape::String),
    ("encrypted", Shape::Boolean),
    ("referenceable", Shape::Boolean),
    ("json_schema", Shape::Object),
    ("deprecation", Shape::Object),
    ("between", Shape::Between),
    ("eq", Shape::Any),
    ("ne", Shape::Any),
    ("gt", Shape::Number),
    ("len_eq", Shape::Integer),
    ("len_min", Shape::Integer),
    ("len_max", Shape::Integer),
    ("match", Shape::String),
    ("not_match", Shape::String),
    ("match_all", Shape::Array),
    ("match_none", Shape::Array),
    ("match_any", Shape::Object),
    ("starts_with", Shape::String),
    ("one_of", Shape::Array),
    ("not_one_of", Shape::Array),
    ("contains", Shape::Any),
    ("is_regex", Shape::Boolean),
    ("timestamp", Shape::Boolean),
    ("uuid", Shape::Boolean),
    ("custom_validator", Shape::Function),
    ("mutually_exclusive_subsets", Shape::Array),
    ("elements", Shape::Object),
    ("keys", Shape::Object),
    ("values", Shape::Object),
    ("fields", Shape::Array),
    ("entity_checks", Shape::Array),
    ("shorthand_fields", Shape::Array),
];

/// Kong's limits on a field's `description`, in bytes (Lua's `#`): the metaschema check here and
/// `#[derive(Schema)]`, which refuses a doc comment outside them at compile time.
pub const DESCRIPTION_BYTES: std::ops::RangeInclusive<usize> = 10..=500;

impl Shape {
    /// `Err(what the value should be)` if `value` does not have this shape.
    fn check(self, value: &Value) -> Result<(), &'static str> {
        let (fits, expected) = match self {
            Shape::Boolean => (value.is_boolean(), "a boolean"),
            Shape::String => (value.is_string(), "a string"),
            Shape::Integer => (is_integer(value), "an integer"),
            Shape::Number => (value.is_number(), "a number"),
            Shape::Array => (value.is_array(), "an array"),
            Shape::Object => (value.is_object(), "an object"),
            Shape::Any => (true, "anything"),
            Shape::Between => (
                value
                    .as_array()
                    .is_some_and(|bounds| bounds.len() == 2 && bounds.iter().all(Value::is_number)),
                "an array of two numbers, [min, max]",
            ),
            Shape::Description => (
                value
                    .as_str()
                    .is_some_and(|text| DESCRIPTION_BYTES.contains(&text.len())),
                "a string of 10 to 500 bytes (Kong's limit)",
            ),
            Shape::OnDelete => (
                matches!(value.as_str(), Some("restrict" | "cascade" | "null")),
                "one of: restrict, cascade, null",
            ),
            Shape::Function => (false, "a Lua function, which JSON cannot express"),
        };
        if fits {
            Ok(())
        } else {
            Err(expected)
        }
    }
}

/// Checks a whole plugin schema (`{"name": .., "fields": [{"config": {..}}, ..]}`) against
/// the rules Kong's metaschema applies when it loads an external plugin, so
/// that a schema Kong would refuse is refused at load time with a message naming the field:
///
/// * top level: an object with a string `name` and a `fields` array; besides those only
///   `entity_checks` (an array), and `shorthand_fields`/`transformations` only empty (their
///   entries need Lua functions); `fields` must hold a `config` field of type `record`;
/// * every `fields` array (top level and in records): entries are objects with exactly one
///   key, the field name, whose value is the field definition;
/// * every field definition, recursively through `elements`, `keys`, `values` and `fields`:
///   * `type` is one of string number integer boolean array set map record foreign json
///     function, with its companions: `elements` for array and set, `keys` and `values` for
///     map, `fields` for record (unless `abstract`), `json_schema` for json;
///   * every attribute is one Kong knows (`unknown attribute` otherwise), of the right JSON
///     type (booleans for `required`, `uuid`, …; integers for `len_*`; a number for `gt`;
///     strings for `match`, `not_match`, `starts_with`, `err`; arrays for `one_of`, …;
///     `between` is `[min, max]` of numbers; `description` is a string of 10 to 500 bytes);
///   * attributes restricted to some types are only on those (`field of type 'x' cannot have
///     attribute 'y'`): `one_of` string/number/integer, `between` number/integer, `len_eq`
///     string/array/set/map, `match`, `uuid`, `is_regex` string, `contains` array/set,
///     `timestamp` number/integer, `unique` string/number/integer/foreign, `json_schema` json;
///   * `one_of` values have the field's type;
///   * `default` is valid for the field itself (its type and its constraints), as Kong
///     validates it with the field's own definition.
///
/// JSON `null` as an attribute value is Kong's null sentinel and counts as absent. Entity
/// checks are not looked into.
pub fn check_plugin_schema(schema: &Value) -> Result<(), String> {
    let top = schema
        .as_object()
        .ok_or_else(|| format!("the schema must be a JSON object, not {schema}"))?;
    for (key, value) in top.iter().filter(|(_, value)| !value.is_null()) {
        match key.as_str() {
            "name" | "fields" => {}
            "entity_checks" if !value.is_array() => {
                return Err("`entity_checks` must be an array".into())
            }
            "entity_checks" => {}
            "shorthand_fields" | "transformations" => {
                if !value.as_array().is_some_and(Vec::is_empty) {
                    return Err(format!(
                        "`{key}` entries need Lua functions, which JSON cannot express"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "unknown top-level key `{key}` (Kong takes name, fields, entity_checks)"
                ))
            }
        }
    }
    match top.get("name") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err("the schema needs a `name`".into()),
        Some(_) => return Err("`name` must be a string".into()),
    }
    let fields = top
        .get("fields")
        .filter(|fields| !fields.is_null())
        .ok_or("the schema needs a `fields` array")?;
    check_fields("", fields)?;
    let config = fields
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(single_entry)
        .find(|(name, _)| *name == "config");
    match config {
        Some((_, config)) if config["type"] == "record" => Ok(()),
        Some(_) => Err("field `config`: must be of type record".into()),
        None => Err("the schema needs a `config` field (of type record)".into()),
    }
}

/// `{"name": definition}` as `(name, definition)`; `None` unless exactly one key.
pub(crate) fn single_entry(entry: &Value) -> Option<(&str, &Value)> {
    let object = entry.as_object().filter(|object| object.len() == 1)?;
    object
        .iter()
        .next()
        .map(|(name, value)| (name.as_str(), value))
}

fn check_fields(path: &str, fields: &Value) -> Result<(), String> {
    let place = if path.is_empty() {
        "the schema".to_string()
    } else {
        format!("field `{path}`")
    };
    let entries = fields
        .as_array()
        .ok_or_else(|| format!("{place}: `fields` must be an array"))?;
    for entry in entries {
        let (name, definition) = single_entry(entry).ok_or_else(|| {
            format!("{place}: each entry of `fields` must be an object with exactly one key, the field name, not {entry}")
        })?;
        let path = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        check_field(&path, definition)?;
    }
    Ok(())
}

fn check_field(path: &str, definition: &Value) -> Result<(), String> {
    let fail = |problem: String| format!("field `{path}`: {problem}");
    let attributes = definition.as_object().ok_or_else(|| {
        fail(format!(
            "the definition must be an object, not {definition}"
        ))
    })?;
    let present = |name: &str| attributes.get(name).filter(|value| !value.is_null());
    let kind = match present("type") {
        None => return Err(fail("missing type declaration".into())),
        Some(Value::String(kind)) if VALID_TYPES.contains(&kind.as_str()) => kind.as_str(),
        Some(other) => {
            return Err(fail(format!(
                "invalid type {other} (Kong knows {})",
                VALID_TYPES.join(", ")
            )))
        }
    };
    let abstract_record = kind == "record" && present("abstract") == Some(&Value::Bool(true));
    let companions = REQUIRED_ATTRIBUTES
        .iter()
        .find(|(of, _)| *of == kind && !abstract_record)
        .map_or(&[][..], |(_, companions)| companions);
    if let Some(missing) = companions.iter().find(|c| present(c).is_none()) {
        return Err(fail(format!(
            "field of type '{kind}' must declare '{missing}'"
        )));
    }
    for (attribute, value) in attributes.iter().filter(|(_, value)| !value.is_null()) {
        let (_, shape) = ATTRIBUTES
            .iter()
            .find(|(name, _)| name == attribute)
            .ok_or_else(|| fail(format!("unknown attribute '{attribute}'")))?;
        if let Some(types) = lookup(KONG_ATTRIBUTE_TYPES, attribute) {
            if !types.contains(&kind) {
                return Err(fail(format!(
                    "field of type '{kind}' cannot have attribute '{attribute}'"
                )));
            }
        }
        shape
            .check(value)
            .map_err(|expected| fail(format!("'{attribute}' must be {expected}")))?;
    }
    for option in present("one_of")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let fits = match kind {
            "string" => option.is_string(),
            "integer" => is_integer(option),
            _ => option.is_number(),
        };
        if !fits {
            return Err(fail(format!(
                "'one_of' value {option} is not of type '{kind}'"
            )));
        }
    }
    for companion in ["elements", "keys", "values"] {
        if let Some(nested) = present(companion) {
            check_field(&format!("{path}.{companion}"), nested)?;
        }
    }
    if let Some(fields) = present("fields") {
        check_fields(path, fields)?;
    }
    match present("default") {
        Some(default) => validate(definition, default)
            .map_err(|invalid| fail(format!("'default' {default} is invalid: {invalid}"))),
        None => Ok(()),
    }
}

/// A JSON number Kong takes as an integer (a float with no fractional part included).
pub(crate) fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(number) => {
            number.is_i64()
                || number.is_u64()
                || number
                    .as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}
