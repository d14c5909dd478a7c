//! Events: one phase handler running for one request.
//!
//! The handler runs in the coroutine that read its HandleEvent (`loops`), and each PDK call
//! suspends it. Each PDK call is the reply to Kong's pending request; the handler writes it on
//! the connection that request came in on and then waits for that connection's next message
//! itself, which is almost always the event's next Step (connection.rs says why): the common PDK
//! call costs no hand-off at all. When the next message belongs to someone else, the connection
//! goes where that message is answered ([`Conn::route`]), and the handler waits for its Step to
//! be delivered ([`Events::resume`]) by whichever coroutine reads it, with the connection it came
//! in on. Events live in one table keyed by event id for those deliveries.
//!
//! Over ProtoBuf:1 (protocol.md §13.6) there are no Steps: Kong keeps the HandleEvent's
//! connection for the whole event, and the handler makes each PDK call a round trip on
//! it (`runtime/protobuf.rs`); the event is ended on that connection. Everything else here (the
//! table, the reaper's deadlines, places, statistics, fail-closed exits) is shared.
//!
//! Kong simply stops sending Steps when a handler calls `kong.response.exit`/`error` or when a PDK
//! call raises inside Kong (protocol.md §8). Terminal calls end the event at once; anything else
//! that goes quiet is reclaimed after the idle deadline, which wakes the blocked handler with an
//! "event ended" error so its coroutine is freed.

use crate::{
    loader::LoadedPlugin,
    runtime::coarse_ms,
    runtime::connection::{Conn, Read},
    runtime::instances::Live,
    runtime::loops::{self, Waker},
    runtime::place::Place,
    runtime::protobuf::KongOnConnection,
    runtime::sharded::ShardedMap,
    wire::frame::Scanner,
    wire::protobuf::{envelope, pdk},
    wire::rpc::{self, StepData, StepResult},
    wire::{Caller, Message, Protocol},
};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RVec},
};
use kong_rust_abi::{Host, HostError, HostErrorKind, HostRef, Host_TO, Phase, PhaseError};
use std::{
    borrow::Cow,
    cell::RefCell,
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
    time::{Duration, Instant},
};

/// What answers Kong's pending request for an event: the handler's next PDK call, its end, or
/// the reaper giving up on it.
pub enum Yield<'a> {
    Call {
        method: &'a str,
        args: &'a [u8],
        terminal: bool,
    },
    Done(Result<(), PhaseError>),
    /// The handler ran past the idle deadline without a PDK call or an end.
    Stuck,
}

/// Turns a [`Yield`] into what Kong is answered, ending the event when it is over (the
/// dispatcher's policy: statistics, fail-closed exits).
pub trait Answer: Send + Sync {
    fn answer<'a>(&self, event: &Event, yielded: Yield<'a>) -> Next<'a>;
}

/// What an event's pending request is answered with, in either protocol.
pub enum Next<'a> {
    /// A PDK call for Kong to run: the handler's (MsgPack:1 only; a ProtoBuf:1 handler's calls
    /// go out inside the request), or the exit that ends a failed request.
    Call {
        method: &'a str,
        args: Cow<'a, [u8]>,
    },
    /// The handler is done.
    Ret,
    /// The event failed without an answer for the client.
    Error(String),
}

/// The Kong request (HandleEvent, or a MsgPack:1 Step) an event's next yield answers, and the
/// connection it came in on, where the answer goes.
pub struct Pending {
    pub caller: Caller,
    pub conn: Conn,
}

/// Answers `caller`'s request for event `event_id` with `next` on `conn`, in the caller's
/// protocol; returns the connection unless it was closed. A ProtoBuf:1 call goes out inside
/// the request (`kong_wait`: how long Kong may take to answer one that it answers).
pub fn send_next(
    caller: Caller,
    event_id: u64,
    next: Next<'_>,
    mut conn: Conn,
    kong_wait: Duration,
) -> Option<Conn> {
    let reply = match (caller, next) {
        (Caller::MsgPack(msgid), Next::Call { method, args }) => rpc::step_reply(
            msgid,
            event_id,
            StepData::Call {
                method,
                args: &args,
            },
        ),
        (Caller::MsgPack(msgid), Next::Ret) => rpc::step_reply(msgid, event_id, StepData::Ret),
        (Caller::MsgPack(msgid), Next::Error(error)) => rpc::error_reply(msgid, &error),
        // Only the exit that ends a failed request: Kong never reads on after it, so the
        // connection closes once it is written.
        (Caller::ProtoBuf(_), Next::Call { method, args }) => {
            let mut kong = KongOnConnection::new(&mut conn, None, kong_wait);
            if let Err(error) = pdk::call(&mut kong, method, &args) {
                tracing::warn!("{}", error.message);
            }
            return None;
        }
        (Caller::ProtoBuf(sequence), Next::Ret) => envelope::event_end(sequence),
        (Caller::ProtoBuf(_), Next::Error(_)) => envelope::failed(true),
    };
    conn.send(&reply).then_some(conn)
}

/// Kong's result of the handler's last PDK call.
type Resume = StepResult;

/// Kong's Step results that arrived on another connection, on their way to the handler: one
/// slot per event, reused for every step, with the handler waiting on its [`Waker`]
/// (beside the connection it reads, when it holds one).
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Slot>,
    /// Wakes the coroutine running the handler, known before its first PDK call can wait.
    handler: OnceLock<Arc<Waker>>,
}

#[derive(Default)]
struct Slot {
    resume: Option<Resume>,
    /// Set once either side is gone: the event left the table, or the handler returned.
    closed: bool,
}

/// The mailbox was closed: the event is over.
struct Closed;

impl Mailbox {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `resume` to the handler; `false` once the mailbox is closed.
    fn deliver(&self, resume: Resume) -> bool {
        {
            let mut slot = self.slot();
            if slot.closed {
                return false;
            }
            slot.resume = Some(resume);
        }
        self.wake();
        true
    }

    /// What was delivered, if anything.
    fn take(&self) -> Result<Option<Resume>, Closed> {
        let mut slot = self.slot();
        match slot.resume.take() {
            Some(resume) => Ok(Some(resume)),
            None if slot.closed => Err(Closed),
            None => Ok(None),
        }
    }

    fn is_closed(&self) -> bool {
        self.slot().closed
    }

    /// Refuses further deliveries and wakes a waiting handler.
    fn close(&self) {
        let undelivered = {
            let mut slot = self.slot();
            slot.closed = true;
            slot.resume.take()
        };
        drop(undelivered);
        self.wake();
    }

    fn wake(&self) {
        if let Some(handler) = self.handler.get() {
            handler.wake();
        }
    }
}

pub struct Event {
    pub id: u64,
    pub instance: Arc<Live>,
    pub phase: Phase,
    mailbox: Mailbox,
    /// The Kong request waiting for the handler's next yield; taken by whoever answers it (the
    /// handler, or the reaper when the handler is stuck), so it is answered exactly once.
    pending: Mutex<Option<Pending>>,
    answer: Arc<dyn Answer>,
    /// True while the handler runs (between a Step and its next yield); a Step arriving then is
    /// refused instead of being queued behind the one in progress.
    running: AtomicBool,
    /// When the event last changed hands (a Step arrived, or the handler yielded a PDK call),
    /// in ms since the table's epoch: the reaper's clock.
    touched_ms: AtomicU64,
    /// The PDK call Kong owes an answer to while the event waits on Kong: what the log line
    /// names if Kong never answers it. Reused for every call, so it costs no allocation.
    waiting_on: Mutex<String>,
    /// When HandleEvent arrived: the event's duration in the statistics.
    pub started: Instant,
    /// Its place under `--max-events-per-plugin`; taken by a newer event of the same plugin
    /// when this one is reclaimed to make room.
    place: Mutex<Option<Place>>,
    /// How long Kong may take to answer a ProtoBuf:1 PDK call (`--kong-step-timeout`).
    kong_wait: Duration,
    /// The protocol of the HandleEvent that started it: a ProtoBuf:1 event's PDK calls go out
    /// on its own connection.
    pub protocol: Protocol,
}

/// The event had no pending request to answer: it was reclaimed, or already answered.
pub struct NotPending;

impl Event {
    /// Answers the pending request with `yielded`, on the connection it came in on, and returns
    /// that connection (`None` once Kong closed it).
    pub fn reply(&self, yielded: Yield<'_>) -> Result<Option<Conn>, NotPending> {
        let Some(Pending { caller, conn }) = self.set_pending(None) else {
            return Err(NotPending);
        };
        let next = self.answer.answer(self, yielded);
        Ok(send_next(caller, self.id, next, conn, self.kong_wait))
    }

    fn set_pending(&self, pending: Option<Pending>) -> Option<Pending> {
        std::mem::replace(
            &mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner),
            pending,
        )
    }

    /// The PDK call Kong never answered, if the event was waiting on Kong.
    pub fn waiting_on(&self) -> Option<String> {
        let method = self
            .waiting_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (!self.running.load(Ordering::Acquire)).then(|| method.clone())
    }

    /// Whether the handler's loop is caught in another handler's plugin code: Kong's answer may
    /// be waiting unread, so its silence says nothing. Only for `limit`: a loop held longer is
    /// stuck for good (code that never returns, or a lock held across a PDK call by a handler
    /// suspended on the same thread), and its events are reclaimed as any other.
    fn stalled(&self, limit: Duration) -> bool {
        let held = self
            .mailbox
            .handler
            .get()
            .map_or(Duration::ZERO, |waker| waker.stalled_for());
        !held.is_zero() && held < limit
    }

    /// Kong's next Step arrived: the handler runs again, and its next yield answers `pending`.
    /// `Err`: it was running already (the Step is refused), with `pending` given back.
    fn resumed(&self, now_ms: u64, pending: Pending) -> Result<(), (String, Pending)> {
        if self.running.swap(true, Ordering::AcqRel) {
            let refusal = format!("event {} is still running its previous step", self.id);
            return Err((refusal, pending));
        }
        self.touched_ms.store(now_ms, Ordering::Release);
        self.set_pending(Some(pending));
        Ok(())
    }
}

pub struct Events {
    table: ShardedMap<Arc<Event>>,
    /// When the table was made, on the [`coarse_ms`] clock.
    epoch_ms: u64,
    pub timeouts: Timeouts,
}

/// How long an event may be silent, by whose turn it is.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A handler running plugin code, between two PDK calls (`--event-timeout`): plugin code
    /// may do slow outbound I/O.
    pub handler: Duration,
    /// Kong owing the answer to a PDK call (`--kong-step-timeout`): Kong runs the call between
    /// two RPCs, so only a call that waits inside Kong (a database lookup) takes long; an
    /// event silent past this was dropped by Kong, most likely because the call raised there.
    pub kong_step: Duration,
    /// How long an event must have waited on Kong before a newer event of a plugin at its
    /// limit may take its place: Kong answers most calls within microseconds, so an event
    /// still waiting after this is most likely gone.
    pub make_room_after: Duration,
}

/// The table going away (the dispatcher is dropped) ends every event in it: their handlers wake
/// to "event ended" instead of waiting out the deadline.
impl Drop for Events {
    fn drop(&mut self) {
        self.end_all();
    }
}

impl Events {
    pub fn new(timeouts: Timeouts) -> Self {
        Events {
            table: ShardedMap::new(),
            epoch_ms: coarse_ms(),
            timeouts,
        }
    }

    fn now_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.epoch_ms)
    }

    /// Registers event `id`, whose first yield answers `pending` (the HandleEvent), and runs its
    /// handler in the calling coroutine. Returns the connection the handler holds at the
    /// end, to read Kong's next message from.
    pub fn run(
        &self,
        id: u64,
        instance: Arc<Live>,
        phase: Phase,
        place: Place,
        pending: Pending,
        answer: Arc<dyn Answer>,
    ) -> Option<Conn> {
        let mailbox = Mailbox::default();
        let _ = mailbox.handler.set(Waker::current());
        let protocol = pending.caller.protocol();
        let event = Arc::new(Event {
            id,
            instance,
            phase,
            mailbox,
            pending: Mutex::new(Some(pending)),
            answer,
            running: AtomicBool::new(true),
            touched_ms: AtomicU64::new(self.now_ms()),
            waiting_on: Mutex::new(String::new()),
            started: Instant::now(),
            place: Mutex::new(Some(place)),
            kong_wait: self.timeouts.kong_step,
            protocol,
        });
        self.table.insert(id, Arc::clone(&event));
        run_handler(event, self)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Event>> {
        self.table.get(id)
    }

    /// Ends an event; a handler still waiting for a Step wakes to "event ended".
    pub fn finish(&self, id: u64) {
        if let Some(event) = self.table.remove(id) {
            event.mailbox.close();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.table.len()
    }

    /// Ends every event: their handlers wake to "event ended".
    pub fn end_all(&self) {
        for event in self.table.values() {
            event.mailbox.close();
        }
    }

    /// Hands Kong's Step result, which came in on `pending`'s connection, to the waiting
    /// handler, whose next yield answers `pending`. `Err`: answer the Step with this error on
    /// the connection given back; nothing else will.
    pub fn resume(
        &self,
        event: &Event,
        result: Resume,
        pending: Pending,
    ) -> Result<(), (String, Conn)> {
        event
            .resumed(self.now_ms(), pending)
            .map_err(|(refusal, pending)| (refusal, pending.conn))?;
        if !event.mailbox.deliver(result) {
            self.finish(event.id);
            // The handler, ending, may have answered it already; if not, the caller does.
            if let Some(pending) = event.set_pending(None) {
                return Err((format!("event {} already ended", event.id), pending.conn));
            }
        }
        Ok(())
    }

    /// The handler yielded a call of PDK `method`: Kong now owes the next Step.
    pub fn waiting_for_kong(&self, event: &Event, method: &str) {
        {
            let mut waiting_on = event
                .waiting_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            waiting_on.clear();
            waiting_on.push_str(method);
        }
        event.touched_ms.store(self.now_ms(), Ordering::Release);
        event.running.store(false, Ordering::Release);
    }

    /// Removes the events silent past their deadline (Kong's or the handler's), waking their
    /// handlers; returns them with whether the handler was the silent side (running).
    pub fn reap(&self) -> Vec<(Arc<Event>, bool)> {
        let now = self.now_ms();
        let before = |timeout: Duration| now.saturating_sub(timeout.as_millis() as u64);
        let (handler, kong) = (
            before(self.timeouts.handler),
            before(self.timeouts.kong_step),
        );
        let reaped = self.table.extract_if(|event| {
            let deadline = match event.running.load(Ordering::Acquire) {
                true => handler,
                false if event.stalled(self.timeouts.handler) => return false,
                false => kong,
            };
            event.touched_ms.load(Ordering::Acquire) < deadline
        });
        reaped
            .into_iter()
            .map(|event| {
                event.mailbox.close();
                let running = event.running.load(Ordering::Acquire);
                (event, running)
            })
            .collect()
    }

    /// A place for a new event of `plugin`, at its limit: the place of its event that has
    /// waited on Kong the longest, once that is past [`Timeouts::make_room_after`], waiting
    /// for that. The reclaimed event is returned to be accounted for; `None` when every place
    /// is held by a handler running plugin code.
    pub fn make_room(&self, plugin: &Arc<LoadedPlugin>) -> Option<(Place, Arc<Event>)> {
        let grace = self.timeouts.make_room_after.as_millis() as u64;
        // The oldest event is eligible within `grace` from now; a newcomer that loses it to
        // another takes the next one, eligible soon after. The cap only bounds a pathological
        // run of lost races (or a starved thread).
        let deadline = Instant::now() + MAKE_ROOM_WAIT_CAP;
        loop {
            let oldest = self
                .table
                .values()
                .into_iter()
                .filter(|event| {
                    Arc::ptr_eq(&event.instance.plugin, plugin)
                        && !event.running.load(Ordering::Acquire)
                        && !event.stalled(self.timeouts.handler)
                })
                .min_by_key(|event| event.touched_ms.load(Ordering::Acquire))?;
            let waited = self
                .now_ms()
                .saturating_sub(oldest.touched_ms.load(Ordering::Acquire));
            if waited >= grace {
                if let Some(event) = self.table.remove(oldest.id) {
                    event.mailbox.close();
                    let place = event
                        .place
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(place) = place {
                        return Some((place, event));
                    }
                }
                continue;
            }
            if Instant::now() >= deadline {
                return None;
            }
            loops::sleep(Duration::from_millis(grace - waited).min(MAKE_ROOM_POLL));
        }
    }
}

/// How long an event must have waited on Kong before a newer event of its plugin, at the
/// limit, takes its place: Kong answers a PDK call within microseconds unless it waits on its
/// database, so by then the event is most likely gone; a request at the limit waits for that
/// instead of being refused.
pub const MAKE_ROOM_AFTER: Duration = Duration::from_millis(250);

/// The longest a request at its plugin's limit waits for a place, however many compete.
const MAKE_ROOM_WAIT_CAP: Duration = Duration::from_secs(2);

/// How often a plugin at its limit looks again for an event to take the place of.
const MAKE_ROOM_POLL: Duration = Duration::from_millis(10);

/// Runs the handler in this coroutine, then its final yield; returns the connection it holds at
/// the end.
fn run_handler(event: Arc<Event>, events: &Events) -> Option<Conn> {
    let bridge = Bridge {
        event,
        events,
        ended: RefCell::new(None),
        held: RefCell::new(None),
    };
    let host: HostRef<'_> = Host_TO::from_ptr(&bridge, TD_Opaque);
    let event = &bridge.event;
    let outcome = event
        .instance
        .object
        .run_phase(event.phase, host)
        .into_result();
    let failure = outcome
        .as_ref()
        .err()
        .map(|error| error.message.to_string());
    // The handler returned: a Step arriving now is refused instead of waiting forever.
    event.mailbox.close();
    match event.reply(Yield::Done(outcome)) {
        Ok(conn) => conn,
        Err(NotPending) => {
            if let Some(message) = failure {
                tracing::warn!(
                    plugin = %event.instance.plugin.name,
                    phase = %event.phase,
                    "handler failed after its event ended: {message}"
                );
            }
            // Ended by a terminal call: the handler still holds the connection it answered on.
            bridge.held.take()
        }
    }
}

/// The handler's end of one event, seen by the plugin as its [`Host`].
struct Bridge<'a> {
    event: Arc<Event>,
    events: &'a Events,
    /// Set once the event is over: every later PDK call fails fast with this reason.
    ended: RefCell<Option<String>>,
    /// The connection a terminal call answered on: read again once the handler returns.
    held: RefCell<Option<Conn>>,
}

const NIL: [u8; 1] = [0xc0];

impl Bridge<'_> {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>, HostError> {
        if let Some(reason) = self.ended.borrow().as_ref() {
            return Err(error(
                HostErrorKind::EventEnded,
                format!("{method}: {reason}"),
            ));
        }
        if !is_array(args) {
            return Err(error(
                HostErrorKind::InvalidCall,
                format!("{method}: arguments must be one MessagePack array"),
            ));
        }
        if method.is_empty() {
            return Err(error(
                HostErrorKind::InvalidCall,
                "empty PDK method name".into(),
            ));
        }
        let terminal = pdk::is_terminal(method);
        if self.event.protocol == Protocol::ProtoBuf {
            return self.call_over_protobuf(method, args, terminal);
        }
        let call = Yield::Call {
            method,
            args,
            terminal,
        };
        let reclaimed = || format!("{method}: the event was reclaimed (Kong stopped answering)");
        let Ok(conn) = self.event.reply(call) else {
            return Err(self.end(reclaimed()));
        };
        if terminal {
            // Kong never answers these: the request is over.
            *self.held.borrow_mut() = conn;
            self.end(format!("the request was already ended by {method}"));
            return Ok(NIL.to_vec());
        }
        match self.next_step(conn) {
            Ok(result) => {
                result.map_err(|message| error(HostErrorKind::Kong, format!("{method}: {message}")))
            }
            Err(Wait::Timeout) => Err(self.end(format!(
                "{method}: Kong did not answer within {}s; the event was abandoned",
                (self.events.timeouts.kong_step * 2).as_secs()
            ))),
            Err(Wait::Closed) => Err(self.end(reclaimed())),
        }
    }

    /// A ProtoBuf:1 PDK call: Kong keeps the event's request open while the handler runs, so
    /// the call is one or more round trips on its connection, which this handler holds.
    fn call_over_protobuf(
        &self,
        method: &str,
        args: &[u8],
        terminal: bool,
    ) -> Result<Vec<u8>, HostError> {
        let event = &self.event;
        let Some(Pending { caller, mut conn }) = event.set_pending(None) else {
            return Err(self.end(format!(
                "{method}: the event was reclaimed (its handler ran too long)"
            )));
        };
        // What a MsgPack:1 call's Step reply does: count the call, and end the event at a
        // terminal one or mark it waiting on Kong, whose silence the reaper judges.
        let _ = event.answer.answer(
            event,
            Yield::Call {
                method,
                args,
                terminal,
            },
        );
        let waker = event
            .mailbox
            .handler
            .get()
            .expect("set before the handler runs");
        let ended = || event.mailbox.is_closed();
        let mut kong = KongOnConnection::new(&mut conn, Some((waker, &ended)), event.kong_wait);
        let result = pdk::call(&mut kong, method, args);
        if kong.broken {
            // The connection cannot be followed any more: it closes, and Kong's request fails.
            let reason = match &result {
                Err(error) => error.message.to_string(),
                Ok(_) => format!("{method}: the connection to Kong failed"),
            };
            return Err(self.end(reason));
        }
        if !terminal && event.mailbox.is_closed() {
            // Reclaimed as Kong's answer arrived: the event is over, as if it had not.
            return Err(self.end(format!(
                "{method}: the event was reclaimed (Kong stopped answering)"
            )));
        }
        if terminal {
            // Kong ends the request at the exit and never reads this connection again
            // (kong.response.exit yields the handler's coroutine, or ends the request): it
            // closes here, as it does on Kong's side.
            self.end(format!("the request was already ended by {method}"));
            return result;
        }
        let pending = Pending { caller, conn };
        match event.resumed(self.events.now_ms(), pending) {
            Ok(()) => result,
            Err((refusal, _)) => Err(self.end(refusal)),
        }
    }

    /// Kong's answer to the PDK call just sent on `conn`: read from `conn` itself while this
    /// handler holds it, or delivered by the coroutine that read it elsewhere.
    fn next_step(&self, mut conn: Option<Conn>) -> Result<Resume, Wait> {
        let mailbox = &self.event.mailbox;
        let waker = mailbox.handler.get().expect("set before the handler runs");
        // Kong's silence is the reaper's to judge (it closes the mailbox well within twice the
        // Kong-step timeout); this wait gives up on its own only if the reaper did not.
        let timeout = self.events.timeouts.kong_step * 2;
        loop {
            let next = match mailbox.take() {
                Ok(Some(resume)) => Ok(resume),
                Ok(None) => match conn.take() {
                    None if waker.wait(timeout) => {
                        waker.clear();
                        continue;
                    }
                    None => Err(Wait::Timeout),
                    Some(mut held) => match held.read(Some(waker), timeout) {
                        Read::Message(message) => match self.own_step(held, message) {
                            Ok(resume) => return Ok(resume),
                            Err(kept) => {
                                conn = kept;
                                continue;
                            }
                        },
                        Read::Woken => {
                            waker.clear();
                            conn = Some(held);
                            continue;
                        }
                        Read::Idle => {
                            conn = Some(held);
                            Err(Wait::Timeout)
                        }
                        Read::Closed => continue,
                    },
                },
                Err(Closed) => Err(Wait::Closed),
            };
            // The Step came in on another connection (which this handler now answers on), or
            // the wait is over: the connection held so far is idle.
            if let Some(conn) = conn {
                conn.park();
            }
            return next;
        }
    }

    /// Takes `message` as this event's next Step if it is one; anything else goes where it is
    /// answered. `Err`: the connection, if this handler still holds it.
    fn own_step(&self, conn: Conn, message: Message) -> Result<Resume, Option<Conn>> {
        let message = match message {
            Message::MsgPack(message)
                if rpc::step_event_id(&message) == Some(self.event.id)
                    && !self.event.mailbox.is_closed() =>
            {
                message
            }
            other => {
                conn.route(other);
                return Err(None);
            }
        };
        let (msgid, result) = match rpc::parse(message).map(|(id, r)| (id, r.into_step())) {
            Ok((msgid, Ok((_, result)))) => (msgid, result),
            Ok((_, Err(_))) => unreachable!("step_event_id matched a Step method"),
            Err(refused) => return Err(conn.refuse(refused)),
        };
        let now = self.events.now_ms();
        let caller = Caller::MsgPack(msgid);
        match self.event.resumed(now, Pending { caller, conn }) {
            Ok(()) => Ok(result),
            Err((refusal, Pending { mut conn, .. })) => {
                let kept = conn.send(&rpc::error_reply(msgid, &refusal));
                Err(kept.then_some(conn))
            }
        }
    }

    fn end(&self, reason: String) -> HostError {
        *self.ended.borrow_mut() = Some(reason.clone());
        error(HostErrorKind::EventEnded, reason)
    }
}

/// Why waiting for Kong's Step gave up.
enum Wait {
    Timeout,
    Closed,
}

impl Host for Bridge<'_> {
    fn call(&self, method: RStr<'_>, args: RSlice<'_, u8>) -> RResult<RVec<u8>, HostError> {
        // This runs inside an extern "C" shim: a panic here would abort the whole host.
        panic::catch_unwind(AssertUnwindSafe(|| {
            Bridge::call(self, method.as_str(), args.as_slice())
        }))
        .unwrap_or_else(|_| {
            Err(error(
                HostErrorKind::InvalidCall,
                "internal error in the host".into(),
            ))
        })
        .map(RVec::from)
        .into()
    }
}

fn error(kind: HostErrorKind, message: String) -> HostError {
    HostError {
        kind,
        message: message.into(),
    }
}

/// Exactly one complete MessagePack value, and an array: what Kong spreads as arguments.
fn is_array(args: &[u8]) -> bool {
    let array_marker = matches!(args.first(), Some(0x90..=0x9f | 0xdc | 0xdd));
    array_marker && Scanner::new(args.len(), 64).scan(args) == Ok(Some(args.len()))
}
