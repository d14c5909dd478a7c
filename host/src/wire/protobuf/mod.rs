//! Kong's ProtoBuf:1 (Kong 3.8+, `kong/runloop/plugin_servers/rpc/pb_rpc.lua`; protocol.md §13):
//! the framing, the RPC envelope, and the messages generated from `host/proto/*.proto` by
//! `build.rs`.

pub(crate) mod envelope;
pub(crate) mod frame;
pub(crate) mod pdk;

/// Kong's `kong_plugin_protocol` package: the RPC envelope (`rpc.proto`) and the PDK's
/// arguments and results (`pdk.proto`). Generated for the whole catalogue, so a message only
/// Kong builds (or only the server does) is never constructed on this side.
#[allow(missing_docs, dead_code, clippy::all)]
pub(crate) mod messages {
    include!(concat!(env!("OUT_DIR"), "/kong_plugin_protocol.rs"));
}
