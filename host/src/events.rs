//! Events: one phase handler running for one request.
//!
//! The handler runs on a plugin thread and blocks on each PDK call; the socket side answers
//! Kong's previous call with that PDK call, and Kong's next Step (on any pooled connection)
//! resumes the handler with the result. Events live in one table keyed by event id, because the
//! Steps of one event arrive on different connections.
//!
//! The plugin thread writes each reply itself, to the connection the request it answers came in
//! on (Kong sends nothing on a connection until it has its reply, so nothing else writes there
//! meanwhile): the socket task goes back to reading at once, and a PDK call costs one thread
//! hand-off instead of two.
//!
//! Kong simply stops sending Steps when a handler calls `kong.response.exit`/`error` or when a
//! PDK call raises inside Kong (spec §8). Terminal calls end the event at once; anything else
//! that goes quiet is reclaimed after the idle deadline, which wakes the blocked handler with an
//! "event ended" error so its thread is freed.

use crate::{frame::Scanner, instances::Live, rpc::MsgId, sharded::ShardedMap};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RVec},
};
use kong_rust_pdk::abi::{Host, HostError, HostErrorKind, HostRef, Host_TO, Phase, PhaseError};
use std::{
    cell::RefCell,
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
    thread::{self, Thread},
    time::{Duration, Instant},
};

/// What answers Kong's pending request for an event: the handler's next PDK call, its end, or
/// the reaper giving up on it.
pub enum Yield {
    Call {
        method: String,
        args: Vec<u8>,
        terminal: bool,
    },
    Done(Result<(), PhaseError>),
    /// The handler ran past the idle deadline without a PDK call or an end.
    Stuck,
}

/// A connection's write side, for the replies plugin threads send themselves.
pub trait Sink: Send + Sync {
    /// Writes one whole reply; a connection Kong closed meanwhile is only logged.
    fn send(&self, reply: &[u8]);
}

/// Turns a [`Yield`] into the reply bytes, ending the event when it is over (the dispatcher's
/// policy: statistics, fail-closed exits).
pub trait Answer: Send + Sync {
    fn answer(&self, event: &Event, msgid: MsgId, yielded: Yield) -> Vec<u8>;
}

/// The Kong request (HandleEvent or Step) an event's next yield answers.
pub struct Pending {
    pub msgid: MsgId,
    pub sink: Arc<dyn Sink>,
}

/// Kong's result of the handler's last PDK call.
type Resume = Result<Vec<u8>, String>;

/// Kong's Step results on their way to the handler: one slot per event, reused for every step,
/// with the handler's thread parked on it. It replaces a channel, whose per-message allocation,
/// waiter-list lock and spin-then-yield showed up in the profile of every PDK call: delivering
/// here is one uncontended lock and, only when the handler sleeps, one futex wake.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Slot>,
    /// The plugin thread running the handler, known before its first PDK call can wait.
    handler: OnceLock<Thread>,
}

#[derive(Default)]
struct Slot {
    resume: Option<Resume>,
    /// Set once either side is gone: the event left the table, or the handler returned.
    closed: bool,
}

/// Why [`Mailbox::wait`] gave up.
enum Wait {
    Timeout,
    Closed,
}

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
        if let Some(handler) = self.handler.get() {
            handler.unpark();
        }
        true
    }

    /// The handler's side: the next Step result, waiting at most `timeout`. Park's wake-up token
    /// makes a delivery between the check and `park_timeout` return at once, not get lost.
    fn wait(&self, timeout: Duration) -> Result<Resume, Wait> {
        let mut deadline = None;
        loop {
            {
                let mut slot = self.slot();
                if let Some(resume) = slot.resume.take() {
                    return Ok(resume);
                }
                if slot.closed {
                    return Err(Wait::Closed);
                }
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Wait::Timeout);
            }
            thread::park_timeout(left);
        }
    }

    /// Refuses further deliveries and wakes a waiting handler.
    fn close(&self) {
        let undelivered = {
            let mut slot = self.slot();
            slot.closed = true;
            slot.resume.take()
        };
        drop(undelivered);
        if let Some(handler) = self.handler.get() {
            handler.unpark();
        }
    }
}

/// One of a plugin's places under `--max-events-per-plugin`, held by each of its events and
/// given back when the event is gone, however it ended.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// A place among `max`, if one is free.
    pub fn acquire(count: &Arc<AtomicUsize>, max: usize) -> Option<InFlight> {
        if count.fetch_add(1, Ordering::AcqRel) < max {
            Some(InFlight(Arc::clone(count)))
        } else {
            count.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    /// When Kong last heard from this event, in ms since the table's epoch: the reaper's clock.
    touched_ms: AtomicU64,
    /// When HandleEvent arrived: the event's duration in the statistics.
    pub started: Instant,
    _place: InFlight,
}

impl Event {
    /// Answers the pending request with `yielded`; false when there was none (the event was
    /// reclaimed, or already answered).
    pub fn reply(&self, yielded: Yield) -> bool {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(Pending { msgid, sink }) = pending else {
            return false;
        };
        sink.send(&self.answer.answer(self, msgid, yielded));
        true
    }

    fn set_pending(&self, pending: Option<Pending>) -> Option<Pending> {
        std::mem::replace(
            &mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner),
            pending,
        )
    }
}

pub struct Events {
    table: ShardedMap<Arc<Event>>,
    epoch: Instant,
    /// How long Kong may stay silent (and a handler may run between PDK calls) before the event
    /// is considered abandoned.
    pub idle_timeout: Duration,
}

/// The table going away (the dispatcher is dropped) ends every event in it: their handlers wake
/// to "event ended" instead of waiting out the deadline.
impl Drop for Events {
    fn drop(&mut self) {
        for event in self.table.values() {
            event.mailbox.close();
        }
    }
}

impl Events {
    pub fn new(idle_timeout: Duration) -> Self {
        Events {
            table: ShardedMap::new(),
            epoch: Instant::now(),
            idle_timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers event `id`, whose first yield answers `pending` (the HandleEvent), and returns
    /// the job that runs its handler, to be spawned on a plugin thread.
    pub fn start(
        &self,
        id: u64,
        instance: Arc<Live>,
        phase: Phase,
        place: InFlight,
        pending: Pending,
        answer: Arc<dyn Answer>,
    ) -> impl FnOnce() + Send {
        let event = Arc::new(Event {
            id,
            instance,
            phase,
            mailbox: Mailbox::default(),
            pending: Mutex::new(Some(pending)),
            answer,
            running: AtomicBool::new(true),
            touched_ms: AtomicU64::new(self.now_ms()),
            started: Instant::now(),
            _place: place,
        });
        self.table.insert(id, Arc::clone(&event));
        let timeout = self.idle_timeout;
        move || {
            let _ = event.mailbox.handler.set(thread::current());
            run_handler(event, timeout)
        }
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

    /// Hands Kong's Step result to the waiting handler, whose next yield answers `pending`.
    /// `Err`: answer the Step with this error, nothing else will.
    pub fn resume(&self, event: &Event, result: Resume, pending: Pending) -> Result<(), String> {
        if event.running.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "event {} is still running its previous step",
                event.id
            ));
        }
        event.touched_ms.store(self.now_ms(), Ordering::Release);
        event.set_pending(Some(pending));
        if !event.mailbox.deliver(result) {
            self.finish(event.id);
            // The handler, ending, may have answered it already; if not, the caller does.
            if event.set_pending(None).is_some() {
                return Err(format!("event {} already ended", event.id));
            }
        }
        Ok(())
    }

    /// The handler yielded a PDK call: Kong now owes the next Step.
    pub fn waiting_for_kong(&self, event: &Event) {
        event.touched_ms.store(self.now_ms(), Ordering::Release);
        event.running.store(false, Ordering::Release);
    }

    /// Removes the events silent past the idle deadline, waking their handlers; returns them
    /// with whether the handler was the silent side (running) rather than Kong.
    pub fn reap(&self) -> Vec<(Arc<Event>, bool)> {
        let deadline = self
            .now_ms()
            .saturating_sub(self.idle_timeout.as_millis() as u64);
        let reaped = self
            .table
            .extract_if(|event| event.touched_ms.load(Ordering::Acquire) < deadline);
        reaped
            .into_iter()
            .map(|event| {
                event.mailbox.close();
                let running = event.running.load(Ordering::Acquire);
                (event, running)
            })
            .collect()
    }
}

/// Runs on a plugin thread: the handler, then its final yield.
fn run_handler(event: Arc<Event>, timeout: Duration) {
    let bridge = Bridge {
        event,
        ended: RefCell::new(None),
        timeout,
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
    if !event.reply(Yield::Done(outcome)) {
        if let Some(message) = failure {
            tracing::warn!(
                plugin = %event.instance.plugin.name,
                phase = %event.phase,
                "handler failed after its event ended: {message}"
            );
        }
    }
}

/// The plugin-thread end of one event, seen by the plugin as its [`Host`].
struct Bridge {
    event: Arc<Event>,
    /// Set once the event is over: every later PDK call fails fast with this reason.
    ended: RefCell<Option<String>>,
    timeout: Duration,
}

/// The handler returned: a Step arriving now is refused instead of waiting forever.
impl Drop for Bridge {
    fn drop(&mut self) {
        self.event.mailbox.close();
    }
}

const NIL: [u8; 1] = [0xc0];

impl Bridge {
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
        let terminal = matches!(method, "kong.response.exit" | "kong.response.error");
        let call = Yield::Call {
            method: method.to_string(),
            args: args.to_vec(),
            terminal,
        };
        if !self.event.reply(call) {
            return Err(self.end(format!(
                "{method}: the event was reclaimed (Kong stopped answering)"
            )));
        }
        if terminal {
            // Kong never answers these: the request is over.
            self.end(format!("the request was already ended by {method}"));
            return Ok(NIL.to_vec());
        }
        match self.event.mailbox.wait(self.timeout) {
            Ok(result) => {
                result.map_err(|message| error(HostErrorKind::Kong, format!("{method}: {message}")))
            }
            Err(Wait::Timeout) => Err(self.end(format!(
                "{method}: Kong did not answer within {}s; the event was abandoned",
                self.timeout.as_secs()
            ))),
            Err(Wait::Closed) => Err(self.end(format!(
                "{method}: the event was reclaimed (Kong stopped answering)"
            ))),
        }
    }

    fn end(&self, reason: String) -> HostError {
        *self.ended.borrow_mut() = Some(reason.clone());
        error(HostErrorKind::EventEnded, reason)
    }
}

impl Host for Bridge {
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
