//! What `#[derive(Schema)]` makes of every Kong field type and attribute, as exact JSON.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk::schema::{check_plugin_schema, plugin_schema, Kind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Deserialize, Schema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
#[allow(dead_code)]
enum Level {
    Low,
    VeryHigh,
}

#[derive(Deserialize, Schema)]
#[allow(dead_code)]
enum Plain {
    #[serde(rename = "x-ray")]
    XRay,
    Yankee,
    #[serde(skip)]
    Hidden,
}

#[derive(Deserialize, Schema)]
#[allow(dead_code)]
struct Upstream {
    /// Host name of the upstream service.
    #[schema(len_min = 1, len_max = 253, not_match = "%s")]
    host: String,
    #[schema(between = (1, 65535), default = 443)]
    port: u16,
}

#[derive(Deserialize, Schema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Config {
    #[schema(one_of = ["GET", "POST"], default = "GET")]
    method: String,
    #[schema(match = "^[%w_]+$", starts_with = "x_")]
    header_name: String,
    #[schema(uuid)]
    tenant_id: Option<String>,
    /// Ignored: the attribute wins.
    #[schema(
        referenceable,
        encrypted = true,
        description = "API key, possibly a vault reference."
    )]
    api_key: Option<String>,
    #[schema(len_eq = 2, uuid = false)]
    country: Option<String>,
    #[schema(gt = 0, default = 1.5)]
    ratio: f64,
    #[schema(one_of = [1, 2, 3])]
    level_number: i32,
    #[schema(between = (-10, 10))]
    offset: i64,
    #[serde(default)]
    verbose: bool,
    level: Level,
    plain: Option<Plain>,
    #[schema(len_min = 1, default = ["a"])]
    tags: Vec<String>,
    levels: BTreeSet<Level>,
    small: HashSet<u8>,
    #[schema(len_max = 10, default = {})]
    headers: BTreeMap<String, String>,
    counts: HashMap<String, u32>,
    upstream: Upstream,
    fallback: Option<Upstream>,
    backends: Vec<Upstream>,
    #[serde(rename = "x-renamed")]
    renamed: Option<u8>,
    #[schema(required = false)]
    #[serde(default)]
    flag: bool,
    #[serde(skip)]
    skipped: u32,
    r#type: Option<String>,
}

fn upstream(required: Option<bool>) -> Value {
    let mut record = json!({
        "type": "record",
        "fields": [
            { "host": {
                "type": "string", "required": true,
                "len_min": 1, "len_max": 253, "not_match": "%s",
                "description": "Host name of the upstream service.",
            } },
            { "port": {
                "type": "integer", "required": true, "between": [1, 65535], "default": 443,
            } },
        ],
    });
    if let Some(required) = required {
        record["required"] = json!(required);
    }
    record
}

#[test]
fn every_type_and_attribute() {
    let expected = json!({
        "type": "record",
        "fields": [
            { "method": {
                "type": "string", "required": true, "one_of": ["GET", "POST"], "default": "GET",
            } },
            { "headerName": {
                "type": "string", "required": true, "match": "^[%w_]+$", "starts_with": "x_",
            } },
            { "tenantId": { "type": "string", "required": false, "uuid": true } },
            { "apiKey": {
                "type": "string", "required": false, "referenceable": true, "encrypted": true,
                "description": "API key, possibly a vault reference.",
            } },
            { "country": { "type": "string", "required": false, "len_eq": 2 } },
            { "ratio": { "type": "number", "required": true, "gt": 0, "default": 1.5 } },
            { "levelNumber": {
                "type": "integer", "required": true,
                "between": [-2147483648i64, 2147483647], "one_of": [1, 2, 3],
            } },
            { "offset": { "type": "integer", "required": true, "between": [-10, 10] } },
            { "verbose": { "type": "boolean", "required": false } },
            { "level": { "type": "string", "required": true, "one_of": ["LOW", "VERY-HIGH"] } },
            { "plain": { "type": "string", "required": false, "one_of": ["x-ray", "Yankee"] } },
            { "tags": {
                "type": "array", "required": true, "elements": { "type": "string" },
                "len_min": 1, "default": ["a"],
            } },
            { "levels": {
                "type": "set", "required": true,
                "elements": { "type": "string", "one_of": ["LOW", "VERY-HIGH"] },
            } },
            { "small": {
                "type": "set", "required": true,
                "elements": { "type": "integer", "between": [0, 255] },
            } },
            { "headers": {
                "type": "map", "required": true,
                "keys": { "type": "string" }, "values": { "type": "string" },
                "len_max": 10, "default": {},
            } },
            { "counts": {
                "type": "map", "required": true,
                "keys": { "type": "string" },
                "values": { "type": "integer", "between": [0, 4294967295u64] },
            } },
            { "upstream": upstream(Some(true)) },
            { "fallback": upstream(Some(false)) },
            { "backends": { "type": "array", "required": true, "elements": upstream(None) } },
            { "x-renamed": { "type": "integer", "required": false, "between": [0, 255] } },
            { "flag": { "type": "boolean", "required": false } },
            { "type": { "type": "string", "required": false } },
        ],
    });
    assert_eq!(Config::schema(), expected);
    assert_eq!(Config::KIND, Some(Kind::Record));
    check_plugin_schema(&plugin_schema("every-type", Config::schema())).unwrap();
}

#[test]
fn enums_are_strings_with_one_of() {
    assert_eq!(
        Level::schema(),
        json!({ "type": "string", "one_of": ["LOW", "VERY-HIGH"] })
    );
    assert_eq!(Level::KIND, Some(Kind::String));
    assert_eq!(
        Plain::schema(),
        json!({ "type": "string", "one_of": ["x-ray", "Yankee"] })
    );
}

#[derive(Deserialize, Schema)]
#[allow(dead_code)]
enum Cases {
    #[serde(rename(serialize = "ignored", deserialize = "deser"))]
    First,
    SecondVariant,
}

#[derive(Deserialize, Schema)]
#[serde(rename_all(serialize = "UPPERCASE", deserialize = "kebab-case"))]
#[allow(dead_code)]
enum DeserializeRule {
    SecondVariant,
}

#[test]
fn serde_deserialize_names_win() {
    assert_eq!(Cases::schema()["one_of"], json!(["deser", "SecondVariant"]));
    assert_eq!(
        DeserializeRule::schema()["one_of"],
        json!(["second-variant"])
    );
}

/// Every `rename_all` rule, for fields and for variants, as serde applies them.
#[test]
fn rename_rules_match_serde() {
    macro_rules! renamed {
        ($rule:literal) => {{
            #[derive(Deserialize, Schema)]
            #[serde(rename_all = $rule)]
            #[allow(dead_code)]
            struct Fields {
                two_words: bool,
            }
            #[derive(Deserialize, Schema)]
            #[serde(rename_all = $rule)]
            #[allow(dead_code)]
            enum Variants {
                TwoWords,
            }
            let field = Fields::schema()["fields"][0]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone();
            // serde agrees: the renamed field deserializes.
            let json = json!({ field.clone(): true });
            assert!(serde_json::from_value::<Fields>(json).unwrap().two_words);
            let variant = Variants::schema()["one_of"][0].as_str().unwrap().to_string();
            serde_json::from_value::<Variants>(json!(variant)).unwrap();
            (field, variant)
        }};
    }
    let cases = [
        (renamed!("lowercase"), ("two_words", "twowords")),
        (renamed!("UPPERCASE"), ("TWO_WORDS", "TWOWORDS")),
        (renamed!("PascalCase"), ("TwoWords", "TwoWords")),
        (renamed!("camelCase"), ("twoWords", "twoWords")),
        (renamed!("snake_case"), ("two_words", "two_words")),
        (renamed!("SCREAMING_SNAKE_CASE"), ("TWO_WORDS", "TWO_WORDS")),
        (renamed!("kebab-case"), ("two-words", "two-words")),
        (renamed!("SCREAMING-KEBAB-CASE"), ("TWO-WORDS", "TWO-WORDS")),
    ];
    for ((field, variant), (expected_field, expected_variant)) in cases {
        assert_eq!(
            (field.as_str(), variant.as_str()),
            (expected_field, expected_variant)
        );
    }
}

#[derive(Deserialize, Schema)]
#[serde(default)]
#[allow(dead_code)]
#[derive(Default)]
struct AllDefault {
    /// A doc comment over
    ///
    /// several lines, joined.
    a: String,
    b: Vec<u8>,
}

#[test]
fn container_default_and_multiline_docs() {
    assert_eq!(
        AllDefault::schema(),
        json!({ "type": "record", "fields": [
            { "a": {
                "type": "string", "required": false,
                "description": "A doc comment over several lines, joined.",
            } },
            { "b": {
                "type": "array", "required": false,
                "elements": { "type": "integer", "between": [0, 255] },
            } },
        ] })
    );
}

#[derive(Schema)]
#[allow(dead_code)]
struct Generic<T: Schema> {
    #[schema(one_of = [1, 2])]
    value: T,
}

#[test]
fn generic_records_check_on_instantiation() {
    assert_eq!(
        Generic::<f64>::schema()["fields"][0]["value"],
        json!({ "type": "number", "required": true, "one_of": [1, 2] })
    );
}

#[test]
fn integers_keep_to_what_both_sides_hold() {
    let between = |schema: Value| schema["between"].clone();
    assert_eq!(between(i8::schema()), json!([-128, 127]));
    assert_eq!(between(u32::schema()), json!([0, 4294967295u64]));
    assert_eq!(
        between(i64::schema()),
        json!([-9007199254740992i64, 9007199254740992i64])
    );
    assert_eq!(between(u64::schema()), json!([0, 9007199254740992u64]));
}

// What only run time sees: `Schema::schema()` panics with the reason.

#[derive(Schema)]
#[allow(dead_code)]
struct DefaultOutsideOneOf {
    #[schema(one_of = ["a", "b"], default = "c")]
    choice: String,
}

#[test]
#[should_panic(
    expected = "derive(Schema) for `DefaultOutsideOneOf` makes a schema Kong would refuse: field `DefaultOutsideOneOf.choice`: 'default' \"c\" is invalid: expected one of: a, b"
)]
fn a_default_must_meet_the_fields_constraints() {
    DefaultOutsideOneOf::schema();
}

const NOT_A_STRING: u32 = 5;

#[derive(Schema)]
#[allow(dead_code)]
struct ComputedDefault {
    #[schema(default = NOT_A_STRING)]
    name: String,
}

#[test]
#[should_panic(
    expected = "field `ComputedDefault.name`: 'default' 5 is invalid: expected a string"
)]
fn a_computed_default_is_checked_at_run_time() {
    ComputedDefault::schema();
}

#[derive(Schema)]
#[allow(dead_code)]
struct EmptyDefault {
    #[schema(default = "")]
    name: String,
}

#[test]
#[should_panic(expected = "'default' \"\" is invalid: length must be at least 1")]
fn kong_refuses_empty_string_defaults_without_len_min() {
    EmptyDefault::schema();
}

#[derive(Schema)]
#[allow(dead_code)]
struct BadPattern {
    #[schema(match = "^[a-z")]
    name: String,
}

#[test]
#[should_panic(
    expected = "field `BadPattern.name`: 'match' pattern \"^[a-z\": malformed pattern (missing ']')"
)]
fn a_malformed_lua_pattern_is_refused() {
    BadPattern::schema();
}

/// A hand-written impl whose KIND disagrees with its definition.
struct Liar;

impl Schema for Liar {
    const KIND: Option<Kind> = Some(Kind::String);
    fn schema() -> Value {
        json!({ "type": "integer" })
    }
}

#[derive(Schema)]
#[allow(dead_code)]
struct UsesLiar {
    liar: Liar,
}

#[test]
#[should_panic(expected = "has KIND \"string\" but its schema() has type Some(\"integer\")")]
fn a_kind_must_match_the_definition() {
    UsesLiar::schema();
}

/// A hand-written impl Kong would refuse.
struct Unknown;

impl Schema for Unknown {
    fn schema() -> Value {
        json!({ "type": "string", "minimum": 3 })
    }
}

#[derive(Schema)]
#[allow(dead_code)]
struct UsesUnknown {
    unknown: Unknown,
}

#[test]
#[should_panic(expected = "field `UsesUnknown.unknown`: unknown attribute 'minimum'")]
fn a_hand_written_definition_is_checked_too() {
    UsesUnknown::schema();
}

/// A hand-written impl that does not declare its KIND: the derive's checks run with
/// `schema()`.
struct Opaque;

impl Schema for Opaque {
    fn schema() -> Value {
        json!({ "type": "integer" })
    }
}

#[derive(Schema)]
#[allow(dead_code)]
struct UsesOpaque {
    #[schema(between = (1, 5), default = 2)]
    opaque: Opaque,
}

#[test]
fn an_unknown_kind_is_fine_when_the_attributes_fit() {
    assert_eq!(Opaque::KIND, None);
    assert_eq!(
        UsesOpaque::schema()["fields"][0]["opaque"],
        json!({ "type": "integer", "required": true, "between": [1, 5], "default": 2 })
    );
}

#[derive(Schema)]
#[allow(dead_code)]
struct MisusesOpaque {
    #[schema(len_min = 1)]
    opaque: Opaque,
}

#[test]
#[should_panic(
    expected = "`MisusesOpaque.opaque`: field of type 'integer' cannot have attribute 'len_min' (it applies to string, array, set, map fields)"
)]
fn an_unknown_kind_is_checked_at_run_time() {
    MisusesOpaque::schema();
}

#[derive(Schema)]
#[allow(dead_code)]
struct WrongLiteralForOpaque {
    #[schema(one_of = ["a"])]
    opaque: Opaque,
}

#[test]
#[should_panic(
    expected = "field `WrongLiteralForOpaque.opaque`: 'one_of' value \"a\" is not of type 'integer'"
)]
fn an_unknown_kinds_literals_are_checked_at_run_time() {
    WrongLiteralForOpaque::schema();
}
