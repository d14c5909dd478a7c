//! `rust-request-logger`: one line per request in Kong's error log, from the log phase. The
//! log phase runs after the response is sent, on a snapshot of the request (protocol.md §10.3), so
//! everything comes from `kong.log.serialize()`: the chosen fields, by dotted path, as one JSON
//! object.

use kong_rust_pdk::prelude::*;
use serde_json::{Map, Value as Json};

/// Kong log levels a line may go to.
#[derive(Deserialize, Schema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warn,
}

#[derive(Deserialize, Schema)]
pub struct Config {
    /// Dotted paths into Kong's log serializer output, e.g. `request.uri`, `response.status`.
    #[schema(
        default = ["request.method", "request.uri", "response.status", "latencies.request", "client_ip"],
        len_min = 1
    )]
    pub fields: Vec<String>,
    /// The level the line is logged at.
    #[schema(default = "notice")]
    pub level: Level,
}

pub struct RequestLogger {
    config: Config,
}

#[plugin(name = "rust-request-logger", priority = 5)]
impl Plugin for RequestLogger {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(RequestLogger { config })
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        let entry: Json = kong.log.serialize()?;
        let line: Map<String, Json> = self
            .config
            .fields
            .iter()
            .map(|path| {
                (
                    path.clone(),
                    lookup(&entry, path).cloned().unwrap_or(Json::Null),
                )
            })
            .collect();
        let line = Json::Object(line).to_string();
        match self.config.level {
            Level::Debug => kong.log.debug(line),
            Level::Info => kong.log.info(line),
            Level::Notice => kong.log.notice(line),
            Level::Warn => kong.log.warn(line),
        }
    }
}

fn lookup<'a>(entry: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(entry, |value, key| value.get(key))
}
