//! Header-write batching: consecutive header writes reach Kong as one `set_headers` round trip,
//! with the effect the separate calls would have had.
//!
//! Each PDK call is a round trip to Kong, and Kong's answer to a header write cannot change
//! what the plugin does next: a write Kong accepts returns nothing. So a write Kong is certain to
//! accept is held and folded with the writes after it, and the fold is sent before any other
//! call, before `kong.response.exit`, and when the handler returns (with `Ok`, `Err` or a
//! panic). A write Kong might refuse, or whose effect depends on what Kong holds, is not held:
//! what was held is sent, then the write itself, so Kong refuses it at the write exactly as
//! before (and, as before, abandons the event). One difference remains: Kong applies a batch's
//! headers in the order its Lua table iterates, so headers of different names set in one batch
//! may reach the service or client in another order than written (values of one name keep
//! theirs); HTTP gives that order no meaning (RFC 9110 §5.3). References are Kong 3.9.3's
//! `kong/pdk/private/checks.lua`, `kong/pdk/service/request.lua` and `kong/pdk/response.lua`.

use super::{value, Call, Headers, Kong};
use crate::export::{restore_panic, take_panic};
use crate::{abi::Phase, Result};
use rmpv::Value;
use std::{
    cell::{Cell, RefCell},
    panic::{self, AssertUnwindSafe},
};

/// Runs `handler` with a [`Kong`] whose header writes on `host` are batched, then sends what is
/// still held: after `Ok`, after `Err` (whose error is kept), and before a panic carries on
/// unwinding. What the host runs for each event, and the test harness too.
pub fn run_batched(
    host: &dyn Call,
    phase: Phase,
    handler: impl FnOnce(&Kong) -> Result<()>,
) -> Result<()> {
    let batching = Batching::new(host, phase);
    let handled = panic::catch_unwind(AssertUnwindSafe(|| handler(&Kong::new(&batching))));
    // The panic's recorded message waits out the flush's PDK call, during which other handlers
    // may run (and panic) on this thread.
    let panicked = handled.is_err().then(take_panic).flatten();
    let flushed = batching.flush();
    match handled {
        Ok(result) => result.and(flushed),
        Err(payload) => {
            restore_panic(panicked);
            panic::resume_unwind(payload)
        }
    }
}

/// A [`Call`] in front of `host` that holds header writes and folds consecutive ones.
struct Batching<'h> {
    host: &'h dyn Call,
    phase: Phase,
    held: RefCell<Option<Held>>,
    /// After a terminal call or a failed one Kong answers nothing more for the event: writes
    /// then go straight through and fail where they are made, as they always did.
    passing_through: Cell<bool>,
}

/// The side of the request a header write changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    ServiceRequest,
    Response,
}

impl Side {
    fn set_headers(self) -> &'static str {
        match self {
            Side::ServiceRequest => "kong.service.request.set_headers",
            Side::Response => "kong.response.set_headers",
        }
    }

    /// Whether Kong takes this side's single writes *and* its `set_headers` in `phase`
    /// (`check_phase(access_and_rewrite)` for the upstream request, `rewrite_access_header` for
    /// the response); elsewhere a write is sent as made, so Kong's phase error comes at the write.
    fn writable_in(self, phase: Phase) -> bool {
        match self {
            Side::ServiceRequest => phase == Phase::Rewrite || phase == Phase::Access,
            Side::Response => {
                phase == Phase::Rewrite || phase == Phase::Access || phase == Phase::Response
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Set,
    Add,
}

/// The header writes held for one side.
struct Held {
    side: Side,
    headers: Headers,
    /// The first write as the plugin made it: alone, it is sent as is (nothing to save).
    first: (&'static str, Vec<u8>),
    writes: usize,
}

/// The header write `method` is, if it is one that can be held. `kong.response.add_header` is
/// not: nginx appends to the response's current values (`ngx.resp.add_header`), which only Kong
/// knows.
fn header_write(method: &str) -> Option<(&'static str, Side, Write)> {
    Some(match method {
        "kong.service.request.set_header" => (
            "kong.service.request.set_header",
            Side::ServiceRequest,
            Write::Set,
        ),
        "kong.service.request.add_header" => (
            "kong.service.request.add_header",
            Side::ServiceRequest,
            Write::Add,
        ),
        "kong.response.set_header" => ("kong.response.set_header", Side::Response, Write::Set),
        _ => return None,
    })
}

/// `(name, value)` when Kong's `validate_header` takes them unchanged: a string name and a
/// string or an array of strings. Numbers and booleans Kong takes too, but turns into text with
/// Lua's `tostring`: those, and everything Kong refuses, are sent as made.
fn accepted_header(args: &[u8]) -> Option<(String, Vec<String>)> {
    let Ok(Value::Array(args)) = rmpv::decode::read_value(&mut &args[..]) else {
        return None;
    };
    let [Value::String(name), value] = args.as_slice() else {
        return None;
    };
    let values = match value {
        Value::String(text) => vec![text.as_str()?.to_string()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    Some((name.as_str()?.to_string(), values))
}

/// Whether a write to `name` does more than change one header, so holding it could change
/// its effect: `:authority` is gRPC's (Kong refuses it elsewhere); `host` also becomes the
/// upstream host (`ngx_var.upstream_host = value`), which set_headers would give the table of
/// values; nginx turns `_` into `-` in response header names, so two spellings name one header.
fn special(side: Side, name: &str) -> bool {
    match side {
        Side::ServiceRequest => {
            name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
        }
        Side::Response => name.contains('_'),
    }
}

/// A header write that can be held.
struct HeaderWrite {
    method: &'static str,
    side: Side,
    write: Write,
    name: String,
    values: Vec<String>,
}

impl<'h> Batching<'h> {
    fn new(host: &'h dyn Call, phase: Phase) -> Self {
        Batching {
            host,
            phase,
            held: RefCell::new(None),
            passing_through: Cell::new(false),
        }
    }

    /// The call as a header write that can be held; `None` when it has to be sent as made.
    fn holdable(&self, method: &str, args: &[u8]) -> Option<HeaderWrite> {
        if self.passing_through.get() {
            return None;
        }
        let (method, side, write) = header_write(method)?;
        if !side.writable_in(self.phase) {
            return None;
        }
        let (name, values) = accepted_header(args)?;
        if special(side, &name) {
            return None;
        }
        Some(HeaderWrite {
            method,
            side,
            write,
            name,
            values,
        })
    }

    /// Folds `write` into the writes held for its side; `false` when there are none to fold
    /// into, or (an add) none for its name.
    fn fold(&self, write: &HeaderWrite) -> bool {
        let mut held = self.held.borrow_mut();
        let Some(held) = held.as_mut().filter(|held| held.side == write.side) else {
            return false;
        };
        // Kong's add_header reads the header's current values and sets them with the new one
        // after: only values held here are known.
        let mut values = match write.write {
            Write::Set => Vec::new(),
            Write::Add => match held.headers.remove(&write.name) {
                Some(current) => current,
                None => return false,
            },
        };
        values.extend(write.values.iter().cloned());
        // Set anew under this write's name: the header takes the name of its last write.
        held.headers.remove(&write.name);
        for value in values {
            held.headers.append(&write.name, value);
        }
        held.writes += 1;
        true
    }

    /// Holds `write` as the first of a new batch (after what was held is sent).
    fn start(&self, write: HeaderWrite, args: &[u8]) {
        let mut headers = Headers::new();
        for value in write.values {
            headers.append(&write.name, value);
        }
        *self.held.borrow_mut() = Some(Held {
            side: write.side,
            headers,
            first: (write.method, args.to_vec()),
            writes: 1,
        });
    }

    /// Sends what is held: one write as made, several as one `set_headers`.
    fn flush(&self) -> Result<()> {
        let Some(held) = self.held.borrow_mut().take() else {
            return Ok(());
        };
        if held.writes == 1 {
            let (method, args) = held.first;
            return self.send(method, &args).map(drop);
        }
        let mut args = Vec::with_capacity(64);
        let table = Value::Array(vec![value::multi_map_value(&held.headers)]);
        rmpv::encode::write_value(&mut args, &table).expect("writing to a Vec cannot fail");
        self.send(held.side.set_headers(), &args).map(drop)
    }

    fn send(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let answer = self.host.call(method, args);
        let terminal = matches!(method, "kong.response.exit" | "kong.response.error");
        if terminal || answer.is_err() {
            self.passing_through.set(true);
        }
        answer
    }
}

impl Call for Batching<'_> {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let write = self.holdable(method, args);
        if let Some(write) = &write {
            if self.fold(write) {
                return Ok(NOTHING.to_vec());
            }
        }
        // Anything else goes after what is held, keeping the calls' order.
        self.flush()?;
        match write {
            // An add with nothing held for its name needs Kong's values: sent as made.
            Some(write) if write.write == Write::Set => {
                self.start(write, args);
                Ok(NOTHING.to_vec())
            }
            _ => self.send(method, args),
        }
    }
}

/// What Kong answers a header write: `nil`.
const NOTHING: [u8; 1] = [0xc0];
