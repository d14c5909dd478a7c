//! The RPC envelope of ProtoBuf:1: Kong's `RpcCall` read into the shared [`Request`] model, and
//! the frames that answer it (pb_rpc.lua, `Rpc:call`).
//!
//! Kong reads exactly one `RpcReturn` per call and asserts that it carries the call's
//! `sequence`. Inside a HandleEvent it first reads PDK calls, each a frame with the method's
//! name and a frame with its argument message, answered with one frame; an empty name frame
//! ends them.

use super::{frame, messages as pb};
use crate::wire::Request;
use prost::Message as _;

/// Reads an `RpcCall` frame: its `sequence` and what it asks. `Err`: why it cannot be served;
/// there is no way to answer it, so the connection is closed.
pub fn parse(payload: &[u8]) -> Result<(i64, Request), String> {
    let call = pb::RpcCall::decode(payload)
        .map_err(|error| format!("undecodable ProtoBuf:1 RpcCall: {error}"))?;
    use pb::rpc_call::Call;
    let request = match call.call {
        Some(Call::CmdStartInstance(start)) => Request::StartInstance {
            name: start.name.into_bytes(),
            config: start.config,
        },
        Some(Call::CmdCloseInstance(close)) => Request::CloseInstance {
            instance_id: close.instance_id.into(),
        },
        Some(Call::CmdHandleEvent(event)) => Request::HandleEvent {
            instance_id: event.instance_id.into(),
            event_name: event.event_name.into_bytes(),
        },
        Some(Call::CmdGetInstanceStatus(status)) => Request::GetInstanceStatus {
            instance_id: status.instance_id.into(),
        },
        Some(Call::CmdGetPluginNames(_) | Call::CmdGetPluginInfo(_)) => {
            return Err(
                "ProtoBuf:1 cmd_get_plugin_names/cmd_get_plugin_info: Kong learns the plugins \
                 from the query command (dump), never from the socket"
                    .into(),
            )
        }
        None => {
            return Err(
                "ProtoBuf:1 RpcCall without a call this host knows (an empty or unknown oneof)"
                    .into(),
            )
        }
    };
    Ok((call.sequence, request))
}

/// What a call ended with, as Kong reads it.
pub enum Return<'a> {
    /// The instance `cmd_start_instance` started, or `cmd_get_instance_status` asked about.
    Instance {
        id: i64,
        name: &'a str,
        started_at: u64,
    },
    /// Nothing to return (`cmd_close_instance`, `cmd_handle_event`).
    Empty,
}

/// The `RpcReturn` frame that ends call `sequence`.
pub fn reply(sequence: i64, value: Return<'_>) -> Vec<u8> {
    use pb::rpc_return::Return as Ret;
    let message = pb::RpcReturn {
        sequence,
        r#return: match value {
            Return::Instance {
                id,
                name,
                started_at,
            } => Some(Ret::InstanceStatus(pb::InstanceStatus {
                name: name.to_string(),
                // Kong's ids are int32 here; the host hands out ids below 2^31 (ids.rs).
                instance_id: id as i32,
                config: None,
                started_at: started_at as i64,
            })),
            Return::Empty => None,
        },
    };
    frame::framed(&message.encode_to_vec())
}

/// The end of a HandleEvent: the empty name frame that ends the PDK calls, then its return.
pub fn event_end(sequence: i64) -> Vec<u8> {
    let mut out = frame::framed(&[]);
    out.extend(reply(sequence, Return::Empty));
    out
}

/// A failed call: Kong asserts that the `RpcReturn` carries its `sequence` (which is never
/// below 2), so this one, carrying -1, ends the call with a Lua error that fails the request
/// (500 where the phase answers the client). It is the protocol's only error that Kong neither
/// retries nor lets a request past: a closed connection makes it restart the instance and
/// replay the phase, which is right only for "no plugin instance" (protocol.md §13).
pub fn failed(in_event: bool) -> Vec<u8> {
    const NOT_THE_CALLS_SEQUENCE: i64 = -1;
    let mut out = Vec::new();
    if in_event {
        out.extend(frame::framed(&[]));
    }
    out.extend(reply(NOT_THE_CALLS_SEQUENCE, Return::Empty));
    out
}

/// A PDK call inside an event: a frame with the method's name, then one with its argument.
pub fn pdk_call(method: &str, args: &[u8]) -> Vec<u8> {
    let mut out = frame::framed(method.as_bytes());
    frame::push_frame(&mut out, args);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kongs_handle_event_call_reads_into_the_shared_model() {
        // pb.encode(".kong_plugin_protocol.RpcCall", {sequence = 2, cmd_handle_event = {
        // instance_id = 7, event_name = "access"}}), field by field.
        let bytes = [
            0x08, 0x02, 0xa2, 0x02, 0x0a, 0x08, 0x07, 0x12, 0x06, b'a', b'c', b'c', b'e', b's',
            b's',
        ];
        let (sequence, request) = parse(&bytes).unwrap();
        assert_eq!(sequence, 2);
        assert!(
            matches!(request, Request::HandleEvent { instance_id: 7, ref event_name } if event_name == b"access")
        );
    }

    #[test]
    fn an_unknown_oneof_and_undecodable_bytes_say_what_is_wrong() {
        // Field 40, a message: not a call this host (or Kong) knows.
        let unknown = [0x08, 0x02, 0xc2, 0x02, 0x00];
        assert!(parse(&unknown).unwrap_err().contains("unknown oneof"));
        let truncated = [0x08, 0x02, 0xa2, 0x02, 0x0a, 0x08];
        assert!(parse(&truncated)
            .unwrap_err()
            .starts_with("undecodable ProtoBuf:1 RpcCall"));
    }

    #[test]
    fn an_event_ends_with_an_empty_frame_and_the_calls_sequence() {
        assert_eq!(event_end(2), [0, 0, 0, 0, 2, 0, 0, 0, 0x08, 0x02]);
        let failed = failed(true);
        assert_eq!(&failed[..8], [0, 0, 0, 0, 11, 0, 0, 0]);
        let ret = pb::RpcReturn::decode(&failed[8..]).unwrap();
        assert_eq!(ret.sequence, -1);
    }
}
