//! `rust-response-transformer`: rewrites the service's response in the `response` phase
//! (Kong buffers the response for a plugin that implements it). Headers are removed, then
//! added; a JSON object body gets fields removed, then string fields added. The client gets
//! the rewritten response with the service's status.

use kong_rust_pdk::prelude::*;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

#[derive(Deserialize, Schema)]
pub struct Config {
    /// Response headers removed (case-insensitive names).
    #[schema(default = [])]
    pub remove_headers: Vec<String>,
    /// Response headers set, replacing any the service sent.
    #[schema(default = {})]
    pub add_headers: BTreeMap<String, String>,
    /// Top-level fields removed from a JSON object body.
    #[schema(default = [])]
    pub remove_json: Vec<String>,
    /// Top-level string fields set in a JSON object body.
    #[schema(default = {})]
    pub add_json: BTreeMap<String, String>,
}

pub struct ResponseTransformer {
    config: Config,
}

#[plugin(name = "rust-response-transformer", priority = 800)]
impl Plugin for ResponseTransformer {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(ResponseTransformer { config })
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        // Headers are edited in place: an exit keeps the response headers already set.
        for name in &self.config.remove_headers {
            kong.response.clear_header(name)?;
        }
        for (name, value) in &self.config.add_headers {
            kong.response.set_header(name, value)?;
        }
        if self.config.remove_json.is_empty() && self.config.add_json.is_empty() {
            return Ok(());
        }
        let is_json = kong
            .service
            .response
            .get_header("content-type")?
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            return Ok(());
        }
        let body = kong.service.response.get_raw_body()?;
        match self.transform_json(&body) {
            Some(body) => {
                let status = kong.service.response.get_status()?;
                kong.response.exit(status, body, None).into()
            }
            None => Ok(()),
        }
    }
}

impl ResponseTransformer {
    /// The body edited, when it is a JSON object.
    fn transform_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut object: Map<String, Json> = serde_json::from_slice(body).ok()?;
        for field in &self.config.remove_json {
            object.remove(field);
        }
        for (field, value) in &self.config.add_json {
            object.insert(field.clone(), Json::String(value.clone()));
        }
        serde_json::to_vec(&object).ok()
    }
}
