//! Decoding the config Kong sends at StartInstance: Kong's defaults and quirks, and Kong's
//! validation of the schema's constraints, with errors naming the field.

use kong_rust_pdk::__private::decode_config as decode;
use kong_rust_pdk::prelude::*;
use std::collections::BTreeMap;

#[derive(Deserialize, Schema, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Slow,
}

#[derive(Deserialize, Schema, Debug, PartialEq)]
struct Upstream {
    #[schema(default = "localhost")]
    host: String,
    #[schema(between = (1, 65535), default = 80)]
    port: u16,
}

#[derive(Deserialize, Schema, Debug, PartialEq)]
struct Auth {
    token: String,
}

#[derive(Deserialize, Schema, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    #[schema(default = "fast")]
    mode: Mode,
    #[schema(one_of = ["GET", "POST"], default = "GET")]
    method: String,
    #[schema(len_min = 2, len_max = 4, match = "^%u+$")]
    code: Option<String>,
    #[schema(len_eq = 2)]
    pair: Option<Vec<u8>>,
    #[schema(not_match = "%s", starts_with = "/")]
    path: Option<String>,
    #[schema(gt = 0)]
    ratio: Option<f64>,
    #[schema(uuid)]
    id: Option<String>,
    #[schema(referenceable, match = "^%d+$")]
    secret: Option<String>,
    #[schema(default = [])]
    tags: Vec<String>,
    #[schema(default = {})]
    headers: BTreeMap<String, u32>,
    big: Option<u64>,
    upstream: Upstream,
    auth: Option<Auth>,
    backends: Option<Vec<Upstream>>,
    name: Option<String>,
}

fn error(json: &str) -> String {
    match decode::<Config>(json) {
        Ok(config) => panic!("accepted {json}: {config:?}"),
        Err(message) => message,
    }
}

#[test]
fn kong_defaults_and_bookkeeping() {
    let config: Config = decode(
        r#"{"__key__":"plugins:p:::::ws","__seq__":3,"__plugin_id":"x","__ws_id":"w",
            "route_id":"r","plugin_instance_name":"i","code":null}"#,
    )
    .unwrap();
    assert_eq!(
        config,
        Config {
            mode: Mode::Fast,
            method: "GET".into(),
            code: None,
            pair: None,
            path: None,
            ratio: None,
            id: None,
            secret: None,
            tags: Vec::new(),
            headers: BTreeMap::new(),
            big: None,
            // a required record Kong expands with its own defaults
            upstream: Upstream {
                host: "localhost".into(),
                port: 80,
            },
            // an optional one stays absent
            auth: None,
            backends: None,
            name: None,
        }
    );
}

#[test]
fn lua_cjson_quirks() {
    // `{}` for an empty array, `[]` for an empty map, 14 significant digits, escaped `/`.
    let config: Config =
        decode(r#"{"tags":{},"headers":[],"big":1e+15,"path":"\/a","backends":[{"port":8.08e3}]}"#)
            .unwrap();
    assert!(config.tags.is_empty() && config.headers.is_empty());
    assert_eq!(config.big, Some(1_000_000_000_000_000));
    assert_eq!(config.path.as_deref(), Some("/a"));
    assert_eq!(
        config.backends,
        Some(vec![Upstream {
            host: "localhost".into(),
            port: 8080
        }])
    );
}

#[test]
fn constraints_are_enforced_with_the_field_named() {
    let cases = [
        (
            r#"{"mode":"medium"}"#,
            "field `mode`: expected one of: fast, slow",
        ),
        (
            r#"{"method":"PUT"}"#,
            "field `method`: expected one of: GET, POST",
        ),
        (r#"{"code":"A"}"#, "field `code`: length must be at least 2"),
        (
            r#"{"code":"ABCDE"}"#,
            "field `code`: length must be at most 4",
        ),
        (r#"{"code":"abc"}"#, "field `code`: invalid value: abc"),
        (r#"{"pair":[1]}"#, "field `pair`: length must be 2"),
        (r#"{"path":"/a b"}"#, "field `path`: invalid value: /a b"),
        (r#"{"path":"a"}"#, "field `path`: should start with: /"),
        (
            r#"{"ratio":0}"#,
            "field `ratio`: value must be greater than 0",
        ),
        (
            r#"{"id":"not-a-uuid"}"#,
            "field `id`: expected a valid UUID",
        ),
        (r#"{"secret":"abc"}"#, "field `secret`: invalid value: abc"),
        (r#"{"name":""}"#, "field `name`: length must be at least 1"),
        (r#"{"name":5}"#, "field `name`: expected a string"),
        (
            r#"{"tags":["a",""]}"#,
            "field `tags[1]`: length must be at least 1",
        ),
        (
            r#"{"tags":["a",null]}"#,
            "field `tags[1]`: required field missing",
        ),
        (
            r#"{"headers":{"x":-1}}"#,
            "field `headers.x`: value should be between 0 and 4294967295",
        ),
        (
            r#"{"upstream":{"port":0}}"#,
            "field `upstream.port`: value should be between 1 and 65535",
        ),
        (
            r#"{"upstream":{"typo":1}}"#,
            "field `upstream.typo`: unknown field",
        ),
        (
            r#"{"backends":[{},{"port":1.5}]}"#,
            "field `backends[1].port`: expected an integer",
        ),
        (
            r#"{"auth":{}}"#,
            "field `auth.token`: required field missing",
        ),
        (r#"{"upstream":"x"}"#, "field `upstream`: expected a record"),
    ];
    for (json, expected) in cases {
        assert_eq!(error(json), format!("invalid config: {expected}"), "{json}");
    }
}

#[test]
fn valid_values_pass() {
    let config: Config = decode(
        r#"{"mode":"slow","method":"POST","code":"AB","pair":[1,2],"path":"/a","ratio":0.5,
            "id":"4A2A7B3C-9d5e-4f61-8a7b-1c2d3e4f5a6b","secret":"{vault://env/secret}",
            "upstream":{"host":"example.com","port":443},"auth":{"token":"t"}}"#,
    )
    .unwrap();
    assert_eq!(config.mode, Mode::Slow);
    // a referenceable field may hold a vault reference whatever its constraints
    assert_eq!(config.secret.as_deref(), Some("{vault://env/secret}"));
    assert_eq!(config.auth, Some(Auth { token: "t".into() }));
}

#[test]
fn malformed_input_is_refused() {
    assert!(error("{not json").starts_with("config is not valid JSON"));
    assert_eq!(error("[1]"), "config must be a JSON object, got [1]");
}

#[derive(Deserialize, Schema, Debug)]
#[allow(dead_code)]
struct Required {
    count: u32,
}

#[test]
fn a_missing_required_field_is_named() {
    let message = decode::<Required>(r#"{"__seq__":1}"#).unwrap_err();
    assert_eq!(
        message,
        "invalid config: field `count`: required field missing"
    );
}
