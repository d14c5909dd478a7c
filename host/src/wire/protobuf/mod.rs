//! Kong's ProtoBuf:1 (Kong 3.8+, `kong/runloop/plugin_servers/rpc/pb_rpc.lua`): the messages,
//! generated from `host/proto/*.proto` by `build.rs`.

/// Kong's `kong_plugin_protocol` package: the RPC envelope (`rpc.proto`) and the PDK's
/// arguments and results (`pdk.proto`). Generated for the whole catalogue, so a message only
/// Kong builds (or only the server does) is never constructed on this side.
#[allow(missing_docs, dead_code, clippy::all)]
pub(crate) mod messages {
    include!(concat!(env!("OUT_DIR"), "/kong_plugin_protocol.rs"));
}

// Called by the runtime's ProtoBuf:1 events (branch `pb`); until then only by its tests.
#[allow(dead_code)]
pub(crate) mod pdk;
