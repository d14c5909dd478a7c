//! `config_validation`: configs through the PDK's decoding (Kong's defaults and validation
//! rules, then serde) into [`FuzzConfig`], whose schema uses every kind of attribute.

use super::plugin::FuzzConfig;
use arbitrary::{Arbitrary, Unstructured};
use kong_rust_pdk::{__private::decode_config, Schema};
use serde_json::{Map, Number, Value};
use std::sync::OnceLock;

/// Input: a config as Kong would send it (any bytes, normally JSON text); or a 0x00 byte (which
/// never starts JSON) followed by bytes from which `arbitrary` builds a JSON value whose keys
/// and strings come mostly from the schema's own names and from values on its constraints'
/// edges, which byte-level mutation of JSON text rarely reaches.
///
/// Checks: nothing panics; an accepted config meets every constraint ([`FuzzConfig::check`])
/// and, sent again as Kong would store it, decodes to the same config; a refused JSON object
/// is refused with an error naming a field of the schema.
pub fn config_validation(data: &[u8]) {
    let text = match data.split_first() {
        Some((0, rest)) => match Json::arbitrary_take_rest(Unstructured::new(rest)) {
            Ok(json) => json.into_value().to_string(),
            Err(_) => return,
        },
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    match decode_config::<FuzzConfig>(&text) {
        Ok(config) => {
            config.check();
            let stored = serde_json::to_string(&config).expect("a config serializes");
            let mut again = decode_config::<FuzzConfig>(&stored)
                .unwrap_or_else(|error| panic!("{stored} was accepted once, then: {error}"));
            // serde_json's default float parsing may land one unit in the last place away.
            if let (Some(a), Some(b)) = (config.ratio, again.ratio) {
                assert!((a - b).abs() <= f64::EPSILON, "ratio {a} came back as {b}");
                again.ratio = config.ratio;
            }
            assert_eq!(again, config, "{stored} decodes to another config");
        }
        Err(error) => {
            if !matches!(serde_json::from_str(&text), Ok(Value::Object(_))) {
                return;
            }
            let path = error
                .strip_prefix("invalid config: field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or_else(|| panic!("refused without naming a field: {error}"));
            let top = path.split(['.', '[']).next().unwrap_or_default();
            assert!(
                top_level_fields().iter().any(|field| field == top),
                "refused naming {path:?}, which is not a field of the schema: {error}"
            );
        }
    }
}

fn top_level_fields() -> &'static [String] {
    static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let schema = FuzzConfig::schema();
        let fields = schema["fields"].as_array().expect("a record has fields");
        fields
            .iter()
            .filter_map(|field| field.as_object()?.keys().next().cloned())
            .collect()
    })
}

/// Strings the schema cares about: its field names, Kong's bookkeeping keys, enum variants,
/// and values on the edges of its constraints.
const KNOWN: &[&str] = &[
    "header",
    "mode",
    "method",
    "port",
    "ratio",
    "weight",
    "tags",
    "headers",
    "path",
    "id",
    "token",
    "secret",
    "pair",
    "modes",
    "limits",
    "upstreams",
    "named",
    "rate",
    "burst",
    "host",
    "__seq__",
    "__key__",
    "route_id",
    "fast",
    "thorough",
    "GET",
    "POST",
    "PUT",
    "x-fuzz",
    "a",
    "A",
    "",
    "/",
    "a b",
    "{vault://env/secret}",
    "123e4567-e89b-12d3-a456-426614174000",
    "example.com",
    "exactly12byt",
    "x_y-0",
];

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Small(i8),
    Integer(i64),
    Float(f64),
    String(Text),
    Array(Vec<Json>),
    Object(Vec<(Text, Json)>),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Any(String),
}

impl Json {
    fn into_value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Small(n) => n.into(),
            Json::Integer(n) => n.into(),
            // JSON has no NaN or infinities.
            Json::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::String(text) => Value::String(text.into_string()),
            Json::Array(items) => items.into_iter().map(Json::into_value).collect(),
            Json::Object(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.into_string(), value.into_value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Known(i) => KNOWN[i as usize % KNOWN.len()].to_string(),
            Text::Any(s) => s,
        }
    }
}
