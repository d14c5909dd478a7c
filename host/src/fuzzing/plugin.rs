//! The plugin the fuzz targets serve: a real `kong_rust_pdk` plugin, linked into this process
//! instead of loaded from a `.so`, whose config uses every kind of schema attribute.

use crate::loader::LoadedPlugin;
use kong_rust_pdk::{
    __private::{root_module, Exported},
    abi::{Phase, PluginModRef},
    prelude::*,
};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

#[derive(Debug, PartialEq, Deserialize, Serialize, Schema)]
pub struct FuzzConfig {
    /// Request header the access phase reads: a lower-case token.
    #[schema(match = "^[a-z][a-z0-9_-]*$", len_max = 32, default = "x-fuzz")]
    pub header: String,
    /// How hard to try, one of the variant names.
    #[schema(default = "fast")]
    pub mode: Mode,
    /// HTTP method, from a fixed list.
    #[schema(one_of = ["GET", "POST", "PUT"], default = "GET")]
    pub method: String,
    /// A port number from 1 to 65535.
    #[schema(between = (1, 65535), default = 8080)]
    pub port: u16,
    /// A fraction from 0 to 1.
    #[schema(between = (0.0, 1.0))]
    pub ratio: Option<f64>,
    /// A strictly positive weight.
    #[schema(gt = 0)]
    pub weight: Option<i64>,
    /// Up to four non-empty tags.
    #[schema(len_max = 4, default = [])]
    pub tags: Vec<String>,
    /// One to three headers to add upstream.
    #[schema(len_min = 1, len_max = 3)]
    pub headers: Option<BTreeMap<String, String>>,
    /// A path starting with a slash.
    #[schema(starts_with = "/")]
    pub path: Option<String>,
    /// An identifier in UUID form.
    #[schema(uuid)]
    pub id: Option<String>,
    /// A token without whitespace.
    #[schema(not_match = "%s")]
    pub token: Option<String>,
    /// A secret of at least 12 bytes, or a vault reference.
    #[schema(referenceable, len_min = 12)]
    pub secret: Option<String>,
    /// Exactly two integers.
    #[schema(len_eq = 2)]
    pub pair: Option<Vec<i32>>,
    /// The modes allowed, as a set.
    pub modes: Option<BTreeSet<Mode>>,
    /// A nested record with defaults of its own.
    pub limits: Limits,
    /// Up to eight upstream targets.
    #[schema(len_max = 8, default = [])]
    pub upstreams: Vec<Upstream>,
    /// Upstream targets by name.
    pub named: Option<BTreeMap<String, Upstream>>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, Schema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Fast,
    Thorough,
}

#[derive(Debug, PartialEq, Deserialize, Serialize, Schema)]
pub struct Limits {
    /// Requests per second, from 1 to 1000.
    #[schema(between = (1, 1000), default = 10)]
    pub rate: u32,
    /// Requests allowed over the rate.
    pub burst: Option<u16>,
}

#[derive(Debug, PartialEq, Deserialize, Serialize, Schema)]
pub struct Upstream {
    /// Host name: letters, digits, dots and dashes.
    #[schema(match = "^[%w.-]+$", len_max = 253)]
    pub host: String,
    /// Share of the traffic, from 0 to 100.
    #[schema(between = (0, 100), default = 100)]
    pub weight: u8,
}

impl FuzzConfig {
    /// Asserts, independently of the PDK's validator, what the schema promises of a config
    /// that decoded.
    pub fn check(&self) {
        let token = |s: &str| {
            let mut bytes = s.bytes();
            bytes.next().is_some_and(|b| b.is_ascii_lowercase())
                && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        };
        assert!(token(&self.header) && self.header.len() <= 32, "{self:?}");
        assert!(["GET", "POST", "PUT"].contains(&self.method.as_str()));
        assert!(self.port >= 1);
        assert!(self.ratio.iter().all(|r| (0.0..=1.0).contains(r)));
        assert!(self.weight.iter().all(|&w| w > 0 && w <= 1 << 53));
        assert!(self.tags.len() <= 4 && self.tags.iter().all(|t| !t.is_empty()));
        if let Some(headers) = &self.headers {
            assert!((1..=3).contains(&headers.len()));
            assert!(headers.iter().all(|(k, v)| !k.is_empty() && !v.is_empty()));
        }
        assert!(self.path.iter().all(|p| p.starts_with('/')));
        assert!(self.id.iter().all(|id| is_uuid(id)), "{self:?}");
        let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        assert!(self
            .token
            .iter()
            .all(|t| !t.is_empty() && !t.bytes().any(space)));
        let reference = |s: &str| s.starts_with("{vault:") && s.ends_with('}');
        assert!(self.secret.iter().all(|s| s.len() >= 12 || reference(s)));
        assert!(self.pair.iter().all(|p| p.len() == 2));
        assert!((1..=1000).contains(&self.limits.rate));
        assert!(self.upstreams.len() <= 8);
        assert!(self
            .named
            .iter()
            .flatten()
            .all(|(name, _)| !name.is_empty()));
        let named = self.named.iter().flat_map(BTreeMap::values);
        for upstream in self.upstreams.iter().chain(named) {
            let host = &upstream.host;
            assert!(!host.is_empty() && host.len() <= 253, "{self:?}");
            assert!(host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
            assert!(upstream.weight <= 100);
        }
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Every phase makes PDK calls, so the host's event machinery (yields, Steps, terminal calls,
/// failures, panics) is what the dispatcher target drives.
pub struct FuzzPlugin {
    header: String,
}

/// Constructed instances not dropped yet: the dispatcher target checks that none outlives its
/// dispatcher (a reference cycle through the event table once kept them all).
pub static LIVE_INSTANCES: AtomicUsize = AtomicUsize::new(0);

impl Drop for FuzzPlugin {
    fn drop(&mut self) {
        LIVE_INSTANCES.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Plugin for FuzzPlugin {
    type Config = FuzzConfig;

    fn new(config: FuzzConfig) -> Result<Self> {
        // A panic here reaches the dispatcher target as a refused StartInstance naming it.
        config.check();
        LIVE_INSTANCES.fetch_add(1, Ordering::AcqRel);
        Ok(FuzzPlugin {
            header: config.header,
        })
    }

    fn rewrite(&self, kong: &Kong) -> Result<()> {
        if kong.request.get_header("x-panic")?.is_some() {
            panic!("asked to panic by x-panic");
        }
        Ok(())
    }

    fn access(&self, kong: &Kong) -> Result<()> {
        match kong.request.get_header(&self.header)?.as_deref() {
            None => Ok(()),
            Some("deny") => kong.response.exit(403, "denied", None).into(),
            Some("fail") => Err(Error::msg("asked to fail")),
            Some(value) => kong.service.request.set_header("x-seen", value),
        }
    }

    fn response(&self, kong: &Kong) -> Result<()> {
        let status = kong.response.get_status()?;
        kong.response.set_header("x-status", &status.to_string())
    }

    fn log(&self, kong: &Kong) -> Result<()> {
        kong.log.notice("fuzz-plugin logged")
    }
}

/// What `#[plugin]` would write, minus the exported library header: that is for `.so` files.
impl Exported for FuzzPlugin {
    const NAME: &'static str = "fuzz-plugin";
    const VERSION: &'static str = "0.1.0";
    const PRIORITY: i64 = 1;
    const PHASES: &'static [Phase] = &[Phase::Rewrite, Phase::Access, Phase::Response, Phase::Log];
}

impl FuzzPlugin {
    /// The plugin as the host holds a loaded one. Its root module is made once per process
    /// (that leaks it, as loading a `.so` would) and on first use, so that its panic hook wraps
    /// libFuzzer's: panics inside handlers are then caught and reported like in a real host,
    /// and any other panic still aborts the fuzzer.
    pub fn loaded() -> LoadedPlugin {
        static MODULE: OnceLock<PluginModRef> = OnceLock::new();
        let module = *MODULE.get_or_init(root_module::<FuzzPlugin>);
        LoadedPlugin::from_module(module, Path::new("<in-process fuzz-plugin>"))
            .expect("the in-process plugin's metadata")
    }
}
