//! Plays Kong Gateway's side of the external plugin protocols "MsgPack:1" and "ProtoBuf:1",
//! byte for byte, so end-to-end tests and the load generator exercise a plugin server
//! exactly as Kong would (see `docs/protocol.md` §5–§8, §11, §15).
//!
//! * [`LuaValue`] packs values like lua-MessagePack 0.5.x does inside Kong.
//! * [`KongClient`] is one nginx worker's RPC client: msgid counter, keepalive
//!   pool, one outstanding request per connection, `serverPid` tracking.
//! * [`run_event`] drives one phase through Kong's bridge loop, answering PDK
//!   calls with a [`PdkResponder`] such as the in-memory [`SimRequest`].
//! * [`RawConn`] sends arbitrary bytes for protocol-level tests.
//! * [`ProtoBufClient`] is the same worker speaking ProtoBuf:1 as `pb_rpc.lua` does: one
//!   pooled connection per call, the PDK calls of an event answered on it by a
//!   [`PdkResponder`].

mod client;
mod error;
mod event;
mod protobuf;
mod raw;
mod sim;
mod value;
mod wire;

#[cfg(test)]
mod testutil;

pub use client::{
    Conn, KongClient, Request, StartReply, StepData, StepReply, DEFAULT_READ_TIMEOUT, MAX_IDLE,
};
pub use error::{Error, Result};
pub use event::{
    is_terminal, kong_fixup, run_event, step_method_for, EventEnd, EventOutcome, Exit, PdkCall,
    PdkResponder,
};
pub use protobuf::{
    derived_name, frame as pb_frame, lua_field, pb_decode, pb_encode, pb_message, service,
    Instance, Method, ProtoBufClient,
};
pub use raw::{RawConn, RAW_READ_TIMEOUT};
pub use sim::{lua_number_to_string, lua_tostring, Headers, SimRequest};
pub use value::LuaValue;
pub use wire::{encode_request, FrameDecoder, ServerMessage};
