//! Kong's entities as the PDK returns them: consumers, credentials, routes, services.
//!
//! Fields Kong may leave `null` are `Option`; fields this crate does not know are ignored, except
//! on [`Consumer`] and [`Credential`], which keep them in `fields` so that passing one back to
//! [`kong.client.authenticate`](super::Client::authenticate) loses nothing.

use rmpv::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entity fields this crate has no field for, as Kong sent them.
pub type Fields = BTreeMap<String, Value>;

/// A reference to another entity: `{"id": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRef {
    /// The referenced entity's `id`.
    pub id: String,
}

/// A consumer (`kong.client.get_consumer`, `load_consumer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// The consumer's `id`, as in Kong's Admin API.
    pub id: String,
    /// The consumer's `username`, as in Kong's Admin API.
    pub username: Option<String>,
    /// The consumer's `custom_id`, as in Kong's Admin API.
    pub custom_id: Option<String>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    /// The consumer's `updated_at`, as in Kong's Admin API.
    pub updated_at: Option<i64>,
    /// The consumer's `tags`, as in Kong's Admin API.
    pub tags: Option<Vec<String>>,
    /// The consumer's `fields`, as in Kong's Admin API.
    #[serde(flatten)]
    pub fields: Fields,
}

/// A credential (`kong.client.get_credential`): its plugin-specific fields (`key`, `username`,
/// …) are in `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    /// The credential's `id`, as in Kong's Admin API.
    pub id: Option<String>,
    /// The credential's `consumer`, as in Kong's Admin API.
    pub consumer: Option<EntityRef>,
    /// The credential's `fields`, as in Kong's Admin API.
    #[serde(flatten)]
    pub fields: Fields,
}

/// A source or destination of a stream route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Endpoint {
    /// The endpoint's `ip`, as in Kong's Admin API.
    pub ip: Option<String>,
    /// The endpoint's `port`, as in Kong's Admin API.
    pub port: Option<u16>,
}

/// The matched route (`kong.router.get_route`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Route {
    /// The route's `id`, as in Kong's Admin API.
    pub id: String,
    /// The route's `name`, as in Kong's Admin API.
    pub name: Option<String>,
    /// The route's `protocols`, as in Kong's Admin API.
    pub protocols: Option<Vec<String>>,
    /// The route's `methods`, as in Kong's Admin API.
    pub methods: Option<Vec<String>>,
    /// The route's `hosts`, as in Kong's Admin API.
    pub hosts: Option<Vec<String>>,
    /// The route's `paths`, as in Kong's Admin API.
    pub paths: Option<Vec<String>>,
    /// The route's `headers`, as in Kong's Admin API.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// The route's `snis`, as in Kong's Admin API.
    pub snis: Option<Vec<String>>,
    /// The route's `sources`, as in Kong's Admin API.
    pub sources: Option<Vec<Endpoint>>,
    /// The route's `destinations`, as in Kong's Admin API.
    pub destinations: Option<Vec<Endpoint>>,
    /// The route's `expression`, as in Kong's Admin API.
    pub expression: Option<String>,
    /// The route's `priority`, as in Kong's Admin API.
    pub priority: Option<i64>,
    /// The route's `regex_priority`, as in Kong's Admin API.
    pub regex_priority: Option<i64>,
    /// The route's `strip_path`, as in Kong's Admin API.
    pub strip_path: Option<bool>,
    /// The route's `preserve_host`, as in Kong's Admin API.
    pub preserve_host: Option<bool>,
    /// The route's `path_handling`, as in Kong's Admin API.
    pub path_handling: Option<String>,
    /// The route's `https_redirect_status_code`, as in Kong's Admin API.
    pub https_redirect_status_code: Option<u16>,
    /// The route's `request_buffering`, as in Kong's Admin API.
    pub request_buffering: Option<bool>,
    /// The route's `response_buffering`, as in Kong's Admin API.
    pub response_buffering: Option<bool>,
    /// The route's `service`, as in Kong's Admin API.
    pub service: Option<EntityRef>,
    /// The route's `tags`, as in Kong's Admin API.
    pub tags: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    /// The route's `updated_at`, as in Kong's Admin API.
    pub updated_at: Option<i64>,
}

/// The service the route proxies to (`kong.router.get_service`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Service {
    /// The service's `id`, as in Kong's Admin API.
    pub id: String,
    /// The service's `name`, as in Kong's Admin API.
    pub name: Option<String>,
    /// The service's `protocol`, as in Kong's Admin API.
    pub protocol: Option<String>,
    /// The service's `host`, as in Kong's Admin API.
    pub host: Option<String>,
    /// The service's `port`, as in Kong's Admin API.
    pub port: Option<u16>,
    /// The service's `path`, as in Kong's Admin API.
    pub path: Option<String>,
    /// The service's `retries`, as in Kong's Admin API.
    pub retries: Option<i64>,
    /// Milliseconds.
    pub connect_timeout: Option<i64>,
    /// The service's `write_timeout`, as in Kong's Admin API.
    pub write_timeout: Option<i64>,
    /// The service's `read_timeout`, as in Kong's Admin API.
    pub read_timeout: Option<i64>,
    /// The service's `tls_verify`, as in Kong's Admin API.
    pub tls_verify: Option<bool>,
    /// The service's `tls_verify_depth`, as in Kong's Admin API.
    pub tls_verify_depth: Option<i64>,
    /// The service's `client_certificate`, as in Kong's Admin API.
    pub client_certificate: Option<EntityRef>,
    /// The service's `ca_certificates`, as in Kong's Admin API.
    pub ca_certificates: Option<Vec<String>>,
    /// The service's `enabled`, as in Kong's Admin API.
    pub enabled: Option<bool>,
    /// The service's `tags`, as in Kong's Admin API.
    pub tags: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    /// The service's `updated_at`, as in Kong's Admin API.
    pub updated_at: Option<i64>,
}
