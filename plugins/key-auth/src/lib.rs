//! `rust-key-auth`: API-key authentication. The key comes from a header or a query argument
//! (first of `key_names` found); `keys` maps each key to the username of the consumer it
//! authenticates. A known key whose consumer exists is authenticated with
//! `kong.client.authenticate` (later plugins, the upstream headers and the log see the
//! consumer); anything else ends the request with 401, as Kong's own key-auth does.

use kong_rust_pdk::prelude::*;
use std::collections::BTreeMap;

#[derive(Deserialize, Schema)]
pub struct Config {
    /// Header and query-argument names the key is looked for in, in order.
    #[schema(default = ["apikey"], len_min = 1)]
    pub key_names: Vec<String>,
    /// API key to the username of the consumer it authenticates.
    #[schema(default = {})]
    pub keys: BTreeMap<String, String>,
    /// Remove the key from the request before it is proxied.
    #[schema(default = false)]
    pub hide_credentials: bool,
}

pub struct KeyAuth {
    config: Config,
}

/// Where a key was found, so it can be hidden from the service.
enum Found {
    Header(String),
    Query(String),
}

#[plugin(name = "rust-key-auth", priority = 1250)]
impl Plugin for KeyAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(KeyAuth { config })
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        let Some((key, found)) = self.find_key(kong)? else {
            return unauthorized(kong, "No API key found in request");
        };
        let consumer = match self.config.keys.get(&key) {
            Some(username) => kong.client.load_consumer(username, true)?,
            None => None,
        };
        let Some(consumer) = consumer else {
            return unauthorized(kong, "Invalid authentication credentials");
        };
        let credential = Credential {
            id: None,
            consumer: Some(EntityRef {
                id: consumer.id.clone(),
            }),
            fields: Default::default(),
        };
        kong.client.authenticate(&consumer, Some(&credential))?;
        kong.service
            .request
            .set_header("x-consumer-id", &consumer.id)?;
        if let Some(username) = &consumer.username {
            kong.service
                .request
                .set_header("x-consumer-username", username)?;
        }
        if self.config.hide_credentials {
            match found {
                Found::Header(name) => kong.service.request.clear_header(&name)?,
                Found::Query(name) => kong.service.request.clear_query_arg(&name)?,
            }
        }
        Ok(())
    }
}

impl KeyAuth {
    fn find_key(&self, kong: &Kong) -> Result<Option<(String, Found)>> {
        for name in &self.config.key_names {
            if let Some(key) = kong.request.get_header(name)? {
                return Ok(Some((key, Found::Header(name.clone()))));
            }
            if let Some(QueryArg::Value(key)) = kong.request.get_query_arg(name)? {
                return Ok(Some((key, Found::Query(name.clone()))));
            }
        }
        Ok(None)
    }
}

/// Kong's key-auth answer: 401, a JSON message and a `WWW-Authenticate` challenge.
fn unauthorized(kong: &Kong, message: &str) -> Result<()> {
    let headers = Headers::from([("WWW-Authenticate", "Key realm=\"kong\"")]);
    kong.response
        .exit_json(
            401,
            &serde_json::json!({ "message": message }),
            Some(&headers),
        )
        .into()
}
