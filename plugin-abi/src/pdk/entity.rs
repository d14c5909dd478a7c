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
    pub id: String,
}

/// A consumer (`kong.client.get_consumer`, `load_consumer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub tags: Option<Vec<String>>,
    #[serde(flatten)]
    pub fields: Fields,
}

/// A credential (`kong.client.get_credential`): its plugin-specific fields (`key`, `username`,
/// …) are in `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Option<String>,
    pub consumer: Option<EntityRef>,
    #[serde(flatten)]
    pub fields: Fields,
}

/// A source or destination of a stream route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Endpoint {
    pub ip: Option<String>,
    pub port: Option<u16>,
}

/// The matched route (`kong.router.get_route`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Route {
    pub id: String,
    pub name: Option<String>,
    pub protocols: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<Endpoint>>,
    pub destinations: Option<Vec<Endpoint>>,
    pub expression: Option<String>,
    pub priority: Option<i64>,
    pub regex_priority: Option<i64>,
    pub strip_path: Option<bool>,
    pub preserve_host: Option<bool>,
    pub path_handling: Option<String>,
    pub https_redirect_status_code: Option<u16>,
    pub request_buffering: Option<bool>,
    pub response_buffering: Option<bool>,
    pub service: Option<EntityRef>,
    pub tags: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// The service the route proxies to (`kong.router.get_service`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Service {
    pub id: String,
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub retries: Option<i64>,
    /// Milliseconds.
    pub connect_timeout: Option<i64>,
    pub write_timeout: Option<i64>,
    pub read_timeout: Option<i64>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub client_certificate: Option<EntityRef>,
    pub ca_certificates: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub tags: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}
