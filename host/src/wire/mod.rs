//! Kong's MessagePack-RPC (docs/protocol.md §6, §7): where one message ends in the stream, and
//! the requests Kong sends and the replies it expects.

pub(crate) mod frame;
pub(crate) mod rpc;
