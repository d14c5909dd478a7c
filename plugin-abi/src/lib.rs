//! # kong-rust-abi
//!
//! The types that cross the boundary between `kong-rust-host` and a plugin `.so`, and nothing
//! else. Plugin authors depend on `kong-rust-pdk`, which depends on this crate; the host
//! depends on this crate alone.
//!
//! **This crate's version is the ABI version.** The root module's version strings are this
//! crate's (`package_version_strings!`), and every type below is checked by abi_stable at load
//! time: the host refuses a plugin built against an incompatible version (another `0.y`) or
//! whose layouts differ. The PDK, its macros and its test harness can therefore release as
//! often as they like: a plugin built against any PDK release that uses a compatible
//! `kong-rust-abi` loads.
//!
//! The surface is deliberately tiny. A PDK call crosses as a method name plus MessagePack bytes
//! ([`Host::call`]), so the typed PDK grows by adding Rust methods on the plugin side, never by
//! changing these types. What may grow is built to grow without an ABI break:
//!
//! * [`Phase`], [`HostErrorKind`] and [`PhaseErrorKind`] are `u8` newtypes with one constant per
//!   known value, not Rust enums: a value added in a later release (a patch release of this
//!   crate) is carried, not undefined behaviour, on the side that does not know it, and every
//!   `match` on them already has a `_` arm. abi_stable sees the same layout either way.
//! * [`PluginMod`], [`Host`] and [`PluginInstance`] are prefix types: new fields and methods go
//!   after their `last_prefix_field`, so older plugins keep loading.

// abi_stable's `#[sabi_trait]` expansion trips this lint (abi_stable issue, not our code).
#![allow(non_local_definitions)]
#![warn(missing_docs)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
    RRef, StableAbi,
};

/// This crate's version: the ABI version a host needs its plugins built against (any version
/// with the same `0.y` loads; see the crate documentation).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Kong's `message` for its own 500s, `{"message":"An unexpected error occurred"}`: the host
/// ends a failed handler's request with it where the phase can still answer
/// ([`Phase::can_answer_client`]), and the test harness shows the same. Not part of the ABI's
/// layout: a plain constant both sides read.
pub const KONG_500_MESSAGE: &str = "An unexpected error occurred";

/// Kong's message for an error status when `kong.response.error` gets none (its
/// `get_http_error_message`, `kong/pdk/response.lua`): the PDK, the harness and the host's
/// ProtoBuf:1 emulation of `kong.response.error` all answer with it. Not part of the ABI's layout.
pub fn kong_error_message(status: u16) -> String {
    let known = match status {
        400 => "Bad request",
        401 => "Unauthorized",
        402 => "Payment required",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        406 => "Not acceptable",
        407 => "Proxy authentication required",
        408 => "Request timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        415 => "Unsupported media type",
        416 => "Range not satisfiable",
        417 => "Expectation failed",
        418 => "I'm a teapot",
        421 => "Misdirected request",
        422 => "Unprocessable entity",
        423 => "Locked",
        424 => "Failed dependency",
        425 => "Too early",
        426 => "Upgrade required",
        428 => "Precondition required",
        429 => "Too many requests",
        431 => "Request header fields too large",
        451 => "Unavailable for legal reasons",
        494 => "Request header or cookie too large",
        500 => KONG_500_MESSAGE,
        501 => "Not implemented",
        502 => "An invalid response was received from the upstream server",
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        505 => "HTTP version not supported",
        506 => "Variant also negotiates",
        507 => "Insufficient storage",
        508 => "Loop detected",
        510 => "Not extended",
        511 => "Network authentication required",
        _ => return format!("The upstream server responded with {status}"),
    };
    known.to_string()
}

/// A phase Kong can run an external plugin in: the phases Kong's plugin-server protocol offers
/// (Kong's `header_filter` and `body_filter` are not among them).
///
/// A `u8` newtype rather than an enum so that a later ABI release can add phases: an unknown
/// value is carried, [`Phase::is_known`] says whether this build knows it, and it prints as
/// `unknown phase N`. Match it like an enum, with a `_` arm:
///
/// ```
/// use kong_rust_abi::Phase;
///
/// fn buffered(phase: Phase) -> bool {
///     match phase {
///         Phase::Response => true,
///         _ => false,
///     }
/// }
/// assert!(buffered(Phase::Response));
/// ```
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phase(u8);

#[allow(non_upper_case_globals)]
impl Phase {
    /// TLS handshake (`ssl_certificate_by_lua`).
    pub const Certificate: Phase = Phase(0);
    /// Before routing.
    pub const Rewrite: Phase = Phase(1);
    /// After routing, before proxying.
    pub const Access: Phase = Phase(2);
    /// After the whole upstream response is buffered.
    pub const Response: Phase = Phase(3);
    /// Stream (TCP/TLS/UDP) routes.
    pub const Preread: Phase = Phase(4);
    /// After the response was sent.
    pub const Log: Phase = Phase(5);

    /// Every phase this build knows, in the order Kong runs them for one request.
    pub const ALL: [Phase; 6] = [
        Phase::Certificate,
        Phase::Rewrite,
        Phase::Access,
        Phase::Response,
        Phase::Preread,
        Phase::Log,
    ];

    /// The name Kong uses in `Phases` and in HandleEvent's `EventName`; `"unknown"` for a phase
    /// this build does not know.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Certificate => "certificate",
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::Response => "response",
            Phase::Preread => "preread",
            Phase::Log => "log",
            _ => "unknown",
        }
    }

    /// Whether this build knows the phase (it is one of [`Phase::ALL`]).
    pub const fn is_known(self) -> bool {
        (self.0 as usize) < Phase::ALL.len()
    }

    /// The raw value that crosses the boundary.
    pub const fn to_u8(self) -> u8 {
        self.0
    }

    /// Whether Kong can still answer the client in this phase (`kong.response.exit` ends the
    /// request): every phase before the response is sent, but not `certificate` (a TLS
    /// handshake) nor `log` (after the response). Where it can, a failed handler's request ends
    /// with Kong's 500 ([`KONG_500_MESSAGE`]); elsewhere the failure is only logged.
    pub const fn can_answer_client(self) -> bool {
        matches!(
            self,
            Phase::Rewrite | Phase::Access | Phase::Response | Phase::Preread
        )
    }

    /// Parses an `EventName`; `None` for anything that is not a phase this build knows.
    pub fn from_name(name: &[u8]) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|phase| phase.as_str().as_bytes() == name)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_known() {
            f.write_str(self.as_str())
        } else {
            write!(f, "unknown phase {}", self.0)
        }
    }
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_known() {
            let name = self.as_str();
            let mut chars = name.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            write!(f, "{}{}", first.unwrap_or_default(), chars.as_str())
        } else {
            write!(f, "Phase({})", self.0)
        }
    }
}

/// What the query command prints about a plugin, read without creating an instance.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// Plugin name, as used in kong.conf `plugins` and the Admin API.
    pub name: RString,
    /// `x.y.z`.
    pub version: RString,
    /// Kong's plugin priority: higher runs first.
    pub priority: i64,
    /// Only the phases the plugin implements: Kong calls the plugin in every advertised phase.
    pub phases: RVec<Phase>,
    /// The plugin's Kong schema (`{"name": …, "fields": [{"config": …}]}`) as JSON text.
    pub schema_json: RString,
}

/// Why a PDK call did not produce a result. A `u8` newtype, like [`Phase`], so that a later
/// ABI release can add kinds: a plugin treats a kind it does not know like [`HostErrorKind::Kong`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostErrorKind(u8);

#[allow(non_upper_case_globals)]
impl HostErrorKind {
    /// The event is over: the plugin already ended the request with `kong.response.exit`, Kong
    /// stopped answering (it abandoned the event), or the host is shutting down.
    pub const EventEnded: HostErrorKind = HostErrorKind(0);
    /// The call itself was malformed (arguments that are not a MessagePack array, …).
    pub const InvalidCall: HostErrorKind = HostErrorKind(1);
    /// Kong answered the call with an error (`plugin.StepError`).
    pub const Kong: HostErrorKind = HostErrorKind(2);
}

/// A failed PDK call: what kind of failure, and the message saying what happened.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HostError {
    /// What kind of failure.
    pub kind: HostErrorKind,
    /// What happened, for the plugin's error.
    pub message: RString,
}

/// How a phase handler failed. A `u8` newtype, like [`Phase`]: the host treats a kind it does
/// not know like [`PhaseErrorKind::Failed`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhaseErrorKind(u8);

#[allow(non_upper_case_globals)]
impl PhaseErrorKind {
    /// The handler returned an error.
    pub const Failed: PhaseErrorKind = PhaseErrorKind(0);
    /// The handler panicked; the panic was caught inside the plugin.
    pub const Panicked: PhaseErrorKind = PhaseErrorKind(1);
}

/// A failed phase handler: how it failed, and its message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PhaseError {
    /// How the handler failed.
    pub kind: PhaseErrorKind,
    /// The error's message, or the panic's (`panicked at src/lib.rs:10:5: boom`).
    pub message: RString,
}

/// The host as a plugin sees it: the one door every PDK call goes through.
#[sabi_trait]
#[allow(missing_docs)]
pub trait Host {
    /// Runs PDK method `method` (e.g. `kong.request.get_header`) with `args`, a MessagePack array
    /// of positional arguments. Blocks until Kong answers; returns Kong's result as MessagePack
    /// (`nil` when Kong returned nothing). For `kong.response.exit` / `kong.response.error` it
    /// returns `nil` at once: Kong never answers those.
    #[sabi(last_prefix_field)]
    fn call(&self, method: RStr<'_>, args: RSlice<'_, u8>) -> RResult<RVec<u8>, HostError>;
}

/// A borrowed [`Host`] handed to the plugin for the length of one phase.
pub type HostRef<'a> = Host_TO<'a, RRef<'a, ()>>;

/// One configured plugin instance, created from a config and shared by every StartInstance with
/// an identical config. Phases of many requests run on it concurrently, hence `Sync`.
#[sabi_trait]
#[allow(missing_docs)]
pub trait PluginInstance: Send + Sync {
    /// Runs one phase to completion. Never unwinds: panics are caught on the plugin's side.
    #[sabi(last_prefix_field)]
    fn run_phase(&self, phase: Phase, host: HostRef<'_>) -> RResult<(), PhaseError>;
}

/// An owned instance; dropping it drops the plugin's value inside the `.so` that made it.
pub type PluginInstanceBox = PluginInstance_TO<'static, RBox<()>>;

/// The root module every plugin `.so` exports (generated by `#[kong_rust_pdk::plugin]`); the
/// host reads it through [`PluginModRef`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
#[allow(missing_docs)]
pub struct PluginMod {
    /// Name, version, priority, phases and schema. Errors only if the plugin's metadata code
    /// panicked.
    pub info: extern "C" fn() -> RResult<PluginInfo, RString>,

    /// Creates an instance from Kong's config JSON. The error names the offending field.
    #[sabi(last_prefix_field)]
    pub new_instance: extern "C" fn(config_json: RStr<'_>) -> RResult<PluginInstanceBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "kong_rust_plugin";
    const NAME: &'static str = "kong_rust_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
