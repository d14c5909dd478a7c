//! The harness takes a config as Kong's Admin API does: a field the schema lacks is refused in
//! Kong's words rather than silently left to its default.

use kong_rust_pdk::prelude::*;
use kong_rust_pdk_test::PluginTest;

#[derive(Deserialize, Schema)]
struct Config {
    /// Issuers whose tokens are accepted.
    #[schema(default = [])]
    issuers: Vec<String>,
}

struct Issuers(Vec<String>);

#[plugin(name = "harness-config", priority = 10)]
impl Plugin for Issuers {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Issuers(config.issuers))
    }
}

fn refusal(config: &str) -> Error {
    match PluginTest::<Issuers>::new(config) {
        Ok(_) => panic!("{config} was accepted"),
        Err(error) => error,
    }
}

#[test]
fn a_misspelled_field_is_refused_with_kongs_unknown_field_message() {
    let error = refusal(r#"{"issuers":["a"],"extra":1}"#);
    assert_eq!(error.kind(), ErrorKind::Config);
    assert_eq!(
        error.to_string(),
        "invalid config: field `extra`: unknown field"
    );

    let error = refusal(r#"{"issuer":["a"]}"#);
    assert_eq!(
        error.to_string(),
        "invalid config: field `issuer`: unknown field"
    );
}

#[test]
fn known_fields_and_the_keys_kong_adds_are_accepted() {
    let test = PluginTest::<Issuers>::new(r#"{"issuers":["a"],"__plugin_id":"p1"}"#).unwrap();
    assert_eq!(test.plugin().0, ["a"]);
    let defaulted = PluginTest::<Issuers>::new("{}").unwrap();
    assert!(defaulted.plugin().0.is_empty());
}
