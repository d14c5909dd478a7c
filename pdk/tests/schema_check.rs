//! `check_plugin_schema`: what Kong's metaschema accepts passes, each rule it enforces fails
//! with a message naming the field.

use kong_rust_pdk::schema::check_plugin_schema;
use serde_json::{json, Value};

/// A plugin schema whose config has the single field `field`.
fn with_field(field: Value) -> Value {
    json!({ "name": "p", "fields": [{ "config": {
        "type": "record", "fields": [{ "f": field }],
    } }] })
}

fn refused(schema: Value) -> String {
    match check_plugin_schema(&schema) {
        Ok(()) => panic!("accepted {schema}"),
        Err(message) => message,
    }
}

#[test]
fn accepts_what_kong_accepts() {
    let accepted = [
        // protocol.md §4.6
        json!({ "name": "rust-hello", "fields": [{ "config": { "type": "record", "fields": [
            { "message": { "type": "string", "default": "hello" } },
            { "tags": { "type": "array", "elements": { "type": "string" } } },
        ] } }] }),
        // base-field overrides of protocol.md §4.4, JSON null as Kong's null
        json!({ "name": "p", "fields": [
            { "consumer": { "type": "foreign", "reference": "consumers", "eq": null } },
            { "protocols": {
                "type": "set", "required": true, "default": ["grpc", "grpcs", "http", "https"],
                "elements": { "type": "string", "one_of": ["grpc", "grpcs", "http", "https"] },
            } },
            { "config": { "type": "record", "fields": [] } },
        ], "entity_checks": [], "transformations": [] }),
        with_field(json!({
            "type": "integer", "required": true, "default": 5, "between": [1, 10],
            "one_of": [5, 6], "gt": 0, "description": "Exactly ten",
        })),
        with_field(json!({
            "type": "string", "default": "ab", "len_min": 2, "len_max": 2, "len_eq": 2,
            "match": "^%a+$", "not_match": "%d", "starts_with": "a", "referenceable": true,
            "encrypted": true, "err": "custom", "is_regex": false, "unique": true,
        })),
        with_field(json!({ "type": "string", "uuid": true, "default": null, "required": null })),
        with_field(json!({ "type": "number", "timestamp": true, "between": [0.5, 1.5] })),
        with_field(json!({
            "type": "map", "keys": { "type": "string" },
            "values": { "type": "array", "elements": { "type": "integer" } },
            "default": { "a": [1], "b": [] }, "len_max": 3,
        })),
        with_field(json!({
            "type": "record", "default": { "x": "given" },
            "fields": [
                { "x": { "type": "string", "required": true } },
                { "y": { "type": "integer", "default": 1 } },
            ],
        })),
        with_field(json!({ "type": "record", "abstract": true })),
        with_field(
            json!({ "type": "set", "elements": { "type": "string" }, "contains": "a", "default": ["a"] }),
        ),
        // a default holding a vault reference skips the constraints
        with_field(json!({
            "type": "string", "referenceable": true, "match": "^%d+$", "default": "{vault://env/x}",
        })),
        // Kong's metaschema leaves these on any type
        with_field(json!({ "type": "integer", "len_min": 1, "starts_with": "x" })),
    ];
    for schema in accepted {
        assert_eq!(check_plugin_schema(&schema), Ok(()), "{schema}");
    }
}

#[test]
fn refuses_a_bad_top_level() {
    let config = json!([{ "config": { "type": "record", "fields": [] } }]);
    let cases = [
        (json!([]), "the schema must be a JSON object, not []"),
        (json!({ "fields": config }), "the schema needs a `name`"),
        (
            json!({ "name": 5, "fields": config }),
            "`name` must be a string",
        ),
        (json!({ "name": "p" }), "the schema needs a `fields` array"),
        (
            json!({ "name": "p", "fields": {} }),
            "the schema: `fields` must be an array",
        ),
        (
            json!({ "name": "p", "fields": config, "no_consumer": true }),
            "unknown top-level key `no_consumer` (Kong takes name, fields, entity_checks)",
        ),
        (
            json!({ "name": "p", "fields": config, "entity_checks": {} }),
            "`entity_checks` must be an array",
        ),
        (
            json!({ "name": "p", "fields": config, "transformations": [{ "input": ["x"] }] }),
            "`transformations` entries need Lua functions, which JSON cannot express",
        ),
        (
            json!({ "name": "p", "fields": [] }),
            "the schema needs a `config` field (of type record)",
        ),
        (
            json!({ "name": "p", "fields": [{ "config": { "type": "string" } }] }),
            "field `config`: must be of type record",
        ),
        (
            json!({ "name": "p", "fields": [{ "config": { "type": "record", "fields": [] }, "x": {} }] }),
            "the schema: each entry of `fields` must be an object with exactly one key",
        ),
        (
            json!({ "name": "p", "fields": ["config"] }),
            "the schema: each entry of `fields` must be an object with exactly one key",
        ),
    ];
    for (schema, expected) in cases {
        let message = refused(schema);
        assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
    }
}

#[test]
fn refuses_each_field_rule() {
    let long = "x".repeat(501);
    // 300 characters, 600 bytes: Kong counts bytes.
    let wide = "é".repeat(300);
    let cases = [
        (json!("string"), "the definition must be an object, not \"string\""),
        (json!({ "required": true }), "missing type declaration"),
        (
            json!({ "type": "text" }),
            "invalid type \"text\" (Kong knows string, number, integer, boolean, array, set, map, record, foreign, json, function)",
        ),
        (json!({ "type": "array" }), "field of type 'array' must declare 'elements'"),
        (json!({ "type": "set" }), "field of type 'set' must declare 'elements'"),
        (
            json!({ "type": "map", "keys": { "type": "string" } }),
            "field of type 'map' must declare 'values'",
        ),
        (json!({ "type": "record" }), "field of type 'record' must declare 'fields'"),
        (json!({ "type": "json" }), "field of type 'json' must declare 'json_schema'"),
        (json!({ "type": "string", "minimum": 1 }), "unknown attribute 'minimum'"),
        (
            json!({ "type": "boolean", "one_of": [true] }),
            "field of type 'boolean' cannot have attribute 'one_of'",
        ),
        (
            json!({ "type": "string", "between": [1, 2] }),
            "field of type 'string' cannot have attribute 'between'",
        ),
        (
            json!({ "type": "integer", "len_eq": 1 }),
            "field of type 'integer' cannot have attribute 'len_eq'",
        ),
        (
            json!({ "type": "array", "elements": { "type": "string" }, "match": "x" }),
            "field of type 'array' cannot have attribute 'match'",
        ),
        (
            json!({ "type": "number", "uuid": true }),
            "field of type 'number' cannot have attribute 'uuid'",
        ),
        (
            json!({ "type": "string", "contains": "x" }),
            "field of type 'string' cannot have attribute 'contains'",
        ),
        (
            json!({ "type": "string", "timestamp": true }),
            "field of type 'string' cannot have attribute 'timestamp'",
        ),
        (
            json!({ "type": "boolean", "unique": true }),
            "field of type 'boolean' cannot have attribute 'unique'",
        ),
        (
            json!({ "type": "string", "description": "Too short" }),
            "'description' must be a string of 10 to 500 bytes (Kong's limit)",
        ),
        (
            json!({ "type": "string", "description": long }),
            "'description' must be a string of 10 to 500 bytes",
        ),
        (
            json!({ "type": "string", "description": wide }),
            "'description' must be a string of 10 to 500 bytes",
        ),
        (
            json!({ "type": "string", "description": 12345678901u64 }),
            "'description' must be a string",
        ),
        (json!({ "type": "string", "required": "yes" }), "'required' must be a boolean"),
        (json!({ "type": "string", "len_min": 1.5 }), "'len_min' must be an integer"),
        (json!({ "type": "number", "gt": "0" }), "'gt' must be a number"),
        (json!({ "type": "string", "match": 5 }), "'match' must be a string"),
        (
            json!({ "type": "integer", "between": [1, 2, 3] }),
            "'between' must be an array of two numbers, [min, max]",
        ),
        (
            json!({ "type": "integer", "between": ["1", 2] }),
            "'between' must be an array of two numbers, [min, max]",
        ),
        (json!({ "type": "string", "one_of": "a" }), "'one_of' must be an array"),
        (
            json!({ "type": "integer", "one_of": [1, "2"] }),
            "'one_of' value \"2\" is not of type 'integer'",
        ),
        (
            json!({ "type": "integer", "one_of": [1.5] }),
            "'one_of' value 1.5 is not of type 'integer'",
        ),
        (json!({ "type": "string", "one_of": [1] }), "'one_of' value 1 is not of type 'string'"),
        (
            json!({ "type": "string", "on_delete": "drop" }),
            "'on_delete' must be one of: restrict, cascade, null",
        ),
        (
            json!({ "type": "string", "custom_validator": "f" }),
            "'custom_validator' must be a Lua function, which JSON cannot express",
        ),
        (json!({ "type": "array", "elements": "string" }), "'elements' must be an object"),
        (json!({ "type": "record", "fields": {} }), "'fields' must be an array"),
        // defaults are validated with the field's own definition
        (json!({ "type": "string", "default": 5 }), "'default' 5 is invalid: expected a string"),
        (
            json!({ "type": "integer", "default": 1.5 }),
            "'default' 1.5 is invalid: expected an integer",
        ),
        (
            json!({ "type": "boolean", "default": "true" }),
            "'default' \"true\" is invalid: expected a boolean",
        ),
        (
            json!({ "type": "string", "one_of": ["a", "b"], "default": "c" }),
            "'default' \"c\" is invalid: expected one of: a, b",
        ),
        (
            json!({ "type": "string", "default": "" }),
            "'default' \"\" is invalid: length must be at least 1",
        ),
        (
            json!({ "type": "integer", "between": [1, 10], "default": 11 }),
            "'default' 11 is invalid: value should be between 1 and 10",
        ),
        (
            json!({ "type": "string", "match": "^%d+$", "default": "x" }),
            "'default' \"x\" is invalid: invalid value: x",
        ),
        (
            json!({ "type": "string", "match": "^%d+$", "err": "digits only", "default": "x" }),
            "'default' \"x\" is invalid: digits only",
        ),
        (
            json!({ "type": "array", "elements": { "type": "string" }, "default": ["a", 1] }),
            "'default' [\"a\",1] is invalid: field `[1]`: expected a string",
        ),
        (
            json!({ "type": "map", "keys": { "type": "string" }, "values": { "type": "integer" }, "default": { "k": "v" } }),
            "'default' {\"k\":\"v\"} is invalid: field `k`: expected an integer",
        ),
        (
            json!({ "type": "record", "fields": [{ "x": { "type": "string", "required": true } }], "default": {} }),
            "'default' {} is invalid: field `x`: required field missing",
        ),
        (
            json!({ "type": "record", "fields": [], "default": { "y": 1 } }),
            "'default' {\"y\":1} is invalid: field `y`: unknown field",
        ),
    ];
    for (field, expected) in cases {
        let message = refused(with_field(field));
        let expected = format!("field `config.f`: {expected}");
        assert!(
            message.starts_with(&expected),
            "{message:?}\n  vs {expected:?}"
        );
    }
}

#[test]
fn names_nested_fields_by_path() {
    let nested = json!({ "type": "record", "fields": [
        { "tags": { "type": "array", "elements": { "type": "boolean", "one_of": [true] } } },
    ] });
    assert_eq!(
        refused(with_field(nested)),
        "field `config.f.tags.elements`: field of type 'boolean' cannot have attribute 'one_of'"
    );
    let map = json!({ "type": "map", "keys": { "type": "string", "between": [1, 2] }, "values": { "type": "string" } });
    assert_eq!(
        refused(with_field(map)),
        "field `config.f.keys`: field of type 'string' cannot have attribute 'between'"
    );
}
