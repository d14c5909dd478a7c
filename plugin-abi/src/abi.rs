//! The types that cross the boundary between the host and a plugin `.so`.
//!
//! Everything here is `StableAbi`: abi_stable checks at load time that the host and the plugin
//! agree on every layout reachable from [`PluginModRef`], and refuses the file otherwise. The
//! surface is deliberately tiny: the PDK is not part of it. A PDK call crosses as a method name
//! plus MessagePack bytes ([`Host::call`]), so the typed PDK grows by adding Rust methods on the
//! plugin side, never by changing these types. When something must be added, it goes after the
//! `last_prefix_field` of a prefix type, so older plugins keep loading.

// abi_stable's `#[sabi_trait]` expansion trips this lint (abi_stable issue, not our code).
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
    RRef, StableAbi,
};

/// The six phases Kong can run an external plugin in (protocol.md §10.1).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Certificate,
    Rewrite,
    Access,
    Response,
    Preread,
    Log,
}

impl Phase {
    /// Every phase, in the order Kong runs them for one request.
    pub const ALL: [Phase; 6] = [
        Phase::Certificate,
        Phase::Rewrite,
        Phase::Access,
        Phase::Response,
        Phase::Preread,
        Phase::Log,
    ];

    /// The name Kong uses in `Phases` and in HandleEvent's `EventName`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Certificate => "certificate",
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::Response => "response",
            Phase::Preread => "preread",
            Phase::Log => "log",
        }
    }

    /// Parses an `EventName`; `None` for anything that is not one of the six.
    pub fn from_name(name: &[u8]) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|phase| phase.as_str().as_bytes() == name)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub priority: i64,
    /// Only the phases the plugin implements: Kong calls the plugin in every advertised phase.
    pub phases: RVec<Phase>,
    /// The plugin's Kong schema (`{"name": …, "fields": [{"config": …}]}`) as JSON text.
    pub schema_json: RString,
}

/// Why a PDK call did not produce a result.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The event is over: the plugin already ended the request with `kong.response.exit`, Kong
    /// stopped answering (it abandoned the event), or the host is shutting down.
    EventEnded,
    /// The call itself was malformed (arguments that are not a MessagePack array, …).
    InvalidCall,
    /// Kong answered the call with an error (`plugin.StepError`).
    Kong,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HostError {
    pub kind: HostErrorKind,
    pub message: RString,
}

/// How a phase handler failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseErrorKind {
    /// The handler returned an error.
    Failed,
    /// The handler panicked; the panic was caught inside the plugin.
    Panicked,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PhaseError {
    pub kind: PhaseErrorKind,
    pub message: RString,
}

/// The host as a plugin sees it: the one door every PDK call goes through.
#[sabi_trait]
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
pub trait PluginInstance: Send + Sync {
    /// Runs one phase to completion. Never unwinds: panics are caught on the plugin's side.
    #[sabi(last_prefix_field)]
    fn run_phase(&self, phase: Phase, host: HostRef<'_>) -> RResult<(), PhaseError>;
}

/// An owned instance; dropping it drops the plugin's value inside the `.so` that made it.
pub type PluginInstanceBox = PluginInstance_TO<'static, RBox<()>>;

/// The root module every plugin `.so` exports (generated by `#[kong_rust_pdk::plugin]`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
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
