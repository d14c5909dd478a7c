//! Where a ProtoBuf:1 event differs from a MsgPack:1 one: Kong keeps the HandleEvent's
//! connection for the whole event (pb_rpc.lua, `Rpc:call`), so each PDK call is a round trip on
//! it, made by the handler itself, and nothing else ever reads it meanwhile.

use crate::{
    runtime::connection::{Connection, Read},
    runtime::loops::Waker,
    wire::protobuf::{
        envelope,
        pdk::{self, RoundTrip},
    },
    wire::Message,
};
use kong_rust_abi::{HostError, HostErrorKind};
use std::time::Duration;

/// Kong's end of a ProtoBuf:1 event: the connection its HandleEvent came in on.
pub(crate) struct KongOnConnection<'a> {
    conn: &'a mut Connection,
    /// The handler's waker and whether the event ended: the reaper ends an event Kong
    /// stopped answering, and wakes the handler waiting here.
    event: Option<(&'a Waker, &'a dyn Fn() -> bool)>,
    /// How long Kong may take to answer (`--kong-step-timeout`).
    timeout: Duration,
    /// Set once the connection cannot be followed (closed, silent, or the event ended while a
    /// reply was owed): it is dropped, which closes it.
    pub(crate) broken: bool,
}

impl<'a> KongOnConnection<'a> {
    pub(crate) fn new(
        conn: &'a mut Connection,
        event: Option<(&'a Waker, &'a dyn Fn() -> bool)>,
        timeout: Duration,
    ) -> Self {
        KongOnConnection {
            conn,
            event,
            timeout,
            broken: false,
        }
    }

    fn broken(&mut self, kind: HostErrorKind, message: String) -> HostError {
        self.broken = true;
        HostError {
            kind,
            message: message.into(),
        }
    }
}

impl RoundTrip for KongOnConnection<'_> {
    fn round_trip(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, HostError> {
        if !self.conn.send(&envelope::pdk_call(method, args)) {
            return Err(self.broken(
                HostErrorKind::EventEnded,
                format!("{method}: Kong closed the connection"),
            ));
        }
        if pdk::is_terminal(method) {
            // Kong ends the request there and writes nothing back.
            return Ok(Vec::new());
        }
        let waker = self.event.map(|(waker, _)| waker);
        loop {
            match self.conn.read(waker, self.timeout) {
                Read::Message(Message::ProtoBuf(reply)) => return Ok(reply),
                Read::Message(Message::MsgPack(_)) => {
                    unreachable!("a connection's protocol is fixed by its first bytes")
                }
                Read::Woken => {
                    let Some((waker, ended)) = self.event else {
                        continue;
                    };
                    waker.clear();
                    if ended() {
                        return Err(self.broken(
                            HostErrorKind::EventEnded,
                            format!("{method}: the event was reclaimed (Kong stopped answering)"),
                        ));
                    }
                }
                Read::Idle => {
                    return Err(self.broken(
                        HostErrorKind::EventEnded,
                        format!(
                            "{method}: Kong did not answer within {}s; the event was abandoned",
                            self.timeout.as_secs()
                        ),
                    ))
                }
                Read::Closed => {
                    return Err(self.broken(
                        HostErrorKind::EventEnded,
                        format!("{method}: Kong closed the connection"),
                    ))
                }
            }
        }
    }
}
