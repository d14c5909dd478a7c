//! Kong's two wire protocols, MessagePack-RPC (docs/protocol.md §6, §7) and ProtoBuf:1
//! (`protobuf`): where one message ends in the stream, and the requests Kong sends and the
//! replies it expects.

pub(crate) mod frame;
pub(crate) mod protobuf;
pub(crate) mod rpc;
