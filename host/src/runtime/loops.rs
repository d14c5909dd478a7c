//! The threads that read Kong's connections and run plugin code: an event loop per core.
//!
//! Plugin handlers are synchronous: each PDK call blocks until Kong answers. With a thread per
//! event, every message Kong sends would wake the one thread waiting for it: a context switch per
//! message. Instead each loop thread watches many connections with one epoll, and runs every
//! handler as a stackful coroutine: a PDK call writes its request and suspends the coroutine
//! ([`suspend_until`]), and the loop resumes it when Kong's answer arrives. A loop that wakes to
//! several ready messages answers them all before it sleeps again. Plugin code stays synchronous
//! and the ABI is unchanged; a coroutine never leaves the thread it started on, so the
//! thread-locals a plugin uses stay the same for the whole event.
//!
//! Work goes to the first loop with room: one loop answering all of Kong's connections batches
//! best (a message for another loop's handler costs a wake-up of that loop). The watchdog
//! spreads idle connections to the next loop when one is busy most of the time, and gathers
//! them back when the load falls.
//!
//! Plugin code that blocks (a sleep, blocking I/O, a long computation) holds its loop's thread.
//! A watchdog notices a loop that has been inside one coroutine for longer than [`CAUGHT_AFTER`]
//! and moves what has not started there, its idle connections and its queued work, to a loop
//! that is free, starting one when every loop is caught (up to the thread limit). Coroutines
//! already suspended on a caught loop wait for it: moving one would change its thread under the
//! plugin.

use super::{coarse_ms, memory};
use corosensei::{stack::DefaultStack, Coroutine, CoroutineResult, Yielder};
use nix::{
    errno::Errno,
    poll::PollTimeout,
    sys::{
        epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags},
        eventfd::{EfdFlags, EventFd},
    },
};
use parking_lot::{Mutex, RwLock};
use std::{
    cell::{Cell, RefCell},
    collections::{BTreeSet, HashMap, VecDeque},
    os::fd::{BorrowedFd, RawFd},
    panic::{self, AssertUnwindSafe},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc, Weak,
    },
    thread,
    time::{Duration, Instant},
};

type Job = Box<dyn FnOnce() + Send>;

/// How long a loop may run one coroutine before the watchdog moves its other work away: far
/// beyond a handler's usual stretch of plugin code between two PDK calls (microseconds), short
/// enough that a request waits little behind a handler that blocks.
pub(crate) const CAUGHT_AFTER: Duration = Duration::from_millis(20);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(10);
/// How often it weighs the loops' loads: their share of time awake, in permille, over this.
const WEIGH_EVERY: u32 = 10;
/// A loop busier than this takes no new work while another has room...
const FULL: u32 = 750;
/// ...and one busier than this gives half its idle connections to a loop below [`ROOM`].
const SPILL: u32 = 900;
const ROOM: u32 = 500;
/// A loop past the first this quiet gives its idle connections back to the first with room.
const GATHER: u32 = 100;
/// Each coroutine's stack: what a plugin thread had (Rust's default for spawned threads). Only
/// the pages a handler touches take memory.
const STACK_BYTES: usize = 2 << 20;
/// Finished coroutines a loop keeps for its next events; more are freed.
const POOLED: usize = 256;
/// A loop with nothing to do this long gives the memory freed meanwhile back to the system.
const TRIM_AFTER: Duration = Duration::from_secs(5);

/// Something a loop watches between Kong's requests: an idle connection.
pub(crate) trait Parked: Send {
    fn watch(&mut self) -> &mut Watch;
    /// Kong may have sent something: read it. `Some`: nothing whole yet, keep watching it.
    fn readable(self: Box<Self>) -> Option<Box<dyn Parked>>;
    /// Where it belongs may have changed (a successor began taking connections over): it parks
    /// itself again, or goes.
    fn revisit(self: Box<Self>);
}

/// A connection's registration with the loop that watches its descriptor; it travels with the
/// connection. Dropped while the descriptor is still open, so it is the owner's first field.
pub(crate) struct Watch {
    fd: RawFd,
    at: Option<Registration>,
}

struct Registration {
    home: Arc<Loop>,
    token: u64,
    readiness: Arc<Readiness>,
}

/// What the loop learned from epoll about one registered descriptor (edge-triggered: an edge
/// is remembered until a read finds the socket empty).
#[derive(Default)]
struct Readiness {
    readable: AtomicBool,
    /// The loop's idle table holds the connection: an edge goes to it there.
    parked: AtomicBool,
    /// The coroutine waiting for it to be readable (its task index + 1), 0 when none.
    waiter: AtomicUsize,
}

impl Watch {
    pub(crate) fn new(fd: RawFd) -> Watch {
        Watch { fd, at: None }
    }

    /// A read found the socket empty: wait for Kong's next edge.
    pub(crate) fn drained(&self) {
        if let Some(at) = &self.at {
            at.readiness.readable.store(false, Ordering::Release);
        }
    }

    pub(crate) fn forget(&mut self) {
        if let Some(at) = self.at.take() {
            // SAFETY: the owner keeps the descriptor open while its Watch lives.
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            let _ = at.home.epoll.delete(fd);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.forget();
    }
}

/// A coroutine's wake-up call: how a Step that arrives elsewhere (Kong may hop connections), or
/// the reaper ending the event, reaches a handler suspended on its loop.
pub struct Waker {
    woken: AtomicBool,
    home: Arc<Loop>,
    task: usize,
}

impl Waker {
    /// The running coroutine's; one for each event it runs.
    pub fn current() -> Arc<Waker> {
        let local = Local::current().expect("handlers run on a loop");
        let task = RUNNING.get().expect("handlers run in a coroutine");
        let waker = &local.tasks.borrow()[task].waker;
        Arc::clone(waker)
    }

    pub fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.home.send(Work::Wake(self.task));
    }

    /// Forgets past wake-ups; the caller then checks what it was woken for.
    pub fn clear(&self) {
        self.woken.store(false, Ordering::Release);
    }

    /// How long its coroutine's loop has been caught in another coroutine's plugin code (zero
    /// when it is not): it cannot run until that returns, whatever arrives for it.
    pub fn stalled_for(&self) -> Duration {
        self.home.caught_for(coarse_ms()).unwrap_or(Duration::ZERO)
    }

    /// Waits until woken or `timeout` passes; true when woken.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(suspend_until(None, Some(self), timeout), Woke::Waker)
    }
}

/// What ended a coroutine's wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The connection has bytes (or was closed).
    Readable,
    Waker,
    Timeout,
}

/// Suspends the running coroutine until `conn` is readable, `waker` (its own) is woken, or
/// `timeout` passes; the loop runs others meanwhile. Outside a coroutine, blocks the thread.
pub(crate) fn suspend_until(
    conn: Option<&mut Watch>,
    waker: Option<&Waker>,
    timeout: Duration,
) -> Woke {
    let (Some(local), Some(task)) = (Local::current(), RUNNING.get()) else {
        return block_until(conn.map(|watch| watch.fd), timeout);
    };
    let readiness = conn.map(|watch| local.register(watch));
    if let Some(readiness) = &readiness {
        if readiness.readable.load(Ordering::Acquire) {
            return Woke::Readable;
        }
    }
    if waker.is_some_and(|waker| waker.woken.load(Ordering::Acquire)) {
        return Woke::Waker;
    }
    if timeout.is_zero() {
        return Woke::Timeout;
    }
    // On the coarse clock, read without a timer access: a deadline may pass a tick late.
    let deadline = coarse_ms().checked_add(ceil_ms(timeout));
    if let Some(readiness) = &readiness {
        readiness.waiter.store(task + 1, Ordering::Release);
    }
    local.tasks.borrow_mut()[task].wait = Some(Wait {
        on_waker: waker.is_some(),
    });
    if let Some(deadline) = deadline {
        local.timers.borrow_mut().insert((deadline, task));
    }
    let woke = suspend();
    if let Some(readiness) = &readiness {
        readiness.waiter.store(0, Ordering::Release);
    }
    if let Some(deadline) = deadline {
        local.timers.borrow_mut().remove(&(deadline, task));
    }
    local.tasks.borrow_mut()[task].wait = None;
    woke
}

/// Sleeps `duration` without holding the loop when in a coroutine.
pub(crate) fn sleep(duration: Duration) {
    suspend_until(None, None, duration);
}

/// A thread that is not a loop's waits the old way.
fn block_until(fd: Option<RawFd>, timeout: Duration) -> Woke {
    use nix::poll::{poll, PollFd, PollFlags};
    let Some(fd) = fd else {
        thread::sleep(timeout);
        return Woke::Timeout;
    };
    // SAFETY: the caller holds the connection whose descriptor this is.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout_ms(timeout)) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return Woke::Timeout,
            // Anything else: let the read say what is wrong.
            _ => return Woke::Readable,
        }
    }
}

fn timeout_ms(timeout: Duration) -> PollTimeout {
    PollTimeout::try_from(ceil_ms(timeout)).unwrap_or(PollTimeout::MAX)
}

/// Whole milliseconds, rounded up, so a wait never ends before its deadline and spins.
fn ceil_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The loop threads, shared by everything that hands them work.
#[derive(Clone)]
pub struct Loops {
    set: Arc<Set>,
}

struct Set {
    loops: RwLock<Vec<Arc<Loop>>>,
    /// Loop threads at most (`--max-plugin-threads`): more start only when all are caught.
    max_threads: usize,
}

/// One loop thread's shared side: what other threads (and the watchdog) reach it by.
pub(crate) struct Loop {
    /// The [`Set`] it belongs to (its address): work for a set runs on its own loops only.
    set: usize,
    epoll: Epoll,
    /// Work from elsewhere; the loop takes it all each time round.
    inbox: Mutex<Vec<Work>>,
    /// Rings the loop for its inbox (registered under [`BELL`]).
    bell: EventFd,
    /// When the loop resumed the coroutine running now ([`coarse_ms`]), 0 while none runs: the
    /// watchdog's measure of a loop caught in plugin code.
    running_since: AtomicU64,
    /// Idle connections it watches, by token: the watchdog takes them from a caught loop.
    idle: Mutex<HashMap<u64, Box<dyn Parked>>>,
    next_token: AtomicU64,
    /// Milliseconds spent awake (out of epoll_wait), counted by the loop.
    busy_ms: AtomicU64,
    /// Its share of time awake over the watchdog's last weighing, in permille.
    load: AtomicU32,
}

enum Work {
    /// Run in a coroutine.
    Run(Job),
    /// Watch until Kong sends on it.
    Park(Box<dyn Parked>),
    /// A waker of this loop's task was woken.
    Wake(usize),
}

const BELL: u64 = 0;

impl Loop {
    fn new(set: usize) -> std::io::Result<Arc<Loop>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let edges = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(&bell, EpollEvent::new(edges, BELL))?;
        Ok(Arc::new(Loop {
            set,
            epoll,
            inbox: Mutex::default(),
            bell,
            running_since: AtomicU64::new(0),
            idle: Mutex::default(),
            next_token: AtomicU64::new(BELL + 1),
            busy_ms: AtomicU64::new(0),
            load: AtomicU32::new(0),
        }))
    }

    fn send(&self, work: Work) {
        let ring = {
            let mut inbox = self.inbox.lock();
            inbox.push(work);
            inbox.len() == 1
        };
        // A loop's own work needs no bell: it takes its inbox before it sleeps. Otherwise the
        // first item rings; later ones are taken with it.
        let own = Local::current().is_some_and(|local| std::ptr::eq(&*local.me, self));
        if ring && !own {
            let _ = self.bell.write(1);
        }
    }

    fn caught(&self, now_ms: u64) -> bool {
        self.caught_for(now_ms).is_some()
    }

    /// How long it has been inside the coroutine running now, once that is [`CAUGHT_AFTER`] or
    /// more.
    fn caught_for(&self, now_ms: u64) -> Option<Duration> {
        let since = self.running_since.load(Ordering::Acquire);
        let running = Duration::from_millis(now_ms.saturating_sub(since));
        (since != 0 && running >= CAUGHT_AFTER).then_some(running)
    }

    /// Takes every `step`-th idle connection out of its table and its epoll, to go elsewhere.
    fn take_idle(&self, step: usize) -> Vec<Box<dyn Parked>> {
        let taken: Vec<Box<dyn Parked>> = {
            let mut idle = self.idle.lock();
            let tokens: Vec<u64> = idle.keys().copied().step_by(step).collect();
            tokens
                .iter()
                .filter_map(|token| idle.remove(token))
                .collect()
        };
        taken
            .into_iter()
            .map(|mut parked| {
                parked.watch().forget();
                parked
            })
            .collect()
    }
}

impl Loops {
    /// A loop per core (at most `max_threads`), and the watchdog; an error when not one loop
    /// thread could start (each failure is logged).
    pub fn new(max_threads: usize) -> std::io::Result<Self> {
        memory::bound_allocator_arenas();
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let set = Arc::new(Set {
            loops: RwLock::default(),
            max_threads: max_threads.max(1),
        });
        for _ in 0..cores.min(set.max_threads) {
            set.start_loop();
        }
        if set.loops.read().is_empty() {
            return Err(std::io::Error::other(
                "no thread to run plugin code could start",
            ));
        }
        let watched = Arc::downgrade(&set);
        let watchdog = thread::Builder::new()
            .name("loop-watchdog".into())
            .spawn(move || watchdog(watched));
        if let Err(error) = watchdog {
            tracing::error!(
                "cannot start the loop watchdog: {error}; blocking plugin code stalls its loop"
            );
        }
        Ok(Loops { set })
    }

    /// Runs `job` in a coroutine: on this loop when called on one, else on a free loop.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        match Local::current() {
            // In the loop itself (not a coroutine): start it now.
            Some(local) if RUNNING.get().is_none() && self.set.owns(&local.me) => local.start(job),
            Some(local) if self.set.owns(&local.me) => local.me.send(Work::Run(job)),
            _ => self.set.free_loop().send(Work::Run(job)),
        }
    }

    /// Watches an idle connection until Kong sends on it: on this loop when called on one.
    pub(crate) fn park(&self, parked: Box<dyn Parked>) {
        match Local::current() {
            Some(local) if self.set.owns(&local.me) => local.watch(parked),
            _ => self.set.free_loop().send(Work::Park(parked)),
        }
    }

    /// Asks every idle connection where it belongs now (a successor began taking them over).
    pub(crate) fn revisit_idle(&self) {
        let loops = self.set.loops.read().clone();
        for each in loops {
            for parked in each.take_idle(1) {
                parked.revisit();
            }
        }
    }
}

impl Set {
    fn owns(&self, one: &Loop) -> bool {
        one.set == self as *const Set as usize
    }

    fn start_loop(self: &Arc<Self>) -> Option<Arc<Loop>> {
        let mut loops = self.loops.write();
        if loops.len() >= self.max_threads {
            return None;
        }
        let one = match Loop::new(Arc::as_ptr(self) as usize) {
            Ok(one) => one,
            Err(error) => {
                tracing::error!("cannot make a loop: {error}");
                return None;
            }
        };
        let number = loops.len();
        let home = Arc::clone(&one);
        let started = thread::Builder::new()
            .name(format!("loop-{number}"))
            .spawn(move || run_loop(home));
        if let Err(error) = started {
            tracing::error!("cannot start a loop thread: {error}");
            return None;
        }
        loops.push(Arc::clone(&one));
        Some(one)
    }

    /// The first loop with room (not caught in plugin code, not [`FULL`]); else the least
    /// loaded that is not caught; a new one when all are caught (if allowed); failing that, any.
    fn free_loop(self: &Arc<Self>) -> Arc<Loop> {
        let now = coarse_ms();
        {
            let loops = self.loops.read();
            let free = || loops.iter().filter(|each| !each.caught(now));
            let roomy = free().find(|each| each.load.load(Ordering::Relaxed) < FULL);
            if let Some(one) =
                roomy.or_else(|| free().min_by_key(|each| each.load.load(Ordering::Relaxed)))
            {
                return Arc::clone(one);
            }
        }
        if let Some(new) = self.start_loop() {
            return new;
        }
        Arc::clone(&self.loops.read()[0])
    }

    /// Moves idle connections from the loop at `from` to `to` (every one, or every other).
    fn move_idle(from: &Loop, to: &Loop, all: bool) {
        for parked in from.take_idle(if all { 1 } else { 2 }) {
            to.send(Work::Park(parked));
        }
    }

    /// Weighs each loop's load since the last weighing; spreads or gathers idle connections.
    fn weigh(&self, busy_before: &mut Vec<u64>, elapsed: Duration) {
        let loops = self.loops.read().clone();
        busy_before.resize(loops.len(), 0);
        let window = (elapsed.as_millis() as u64).max(1);
        for (each, before) in loops.iter().zip(busy_before.iter_mut()) {
            let busy = each.busy_ms.load(Ordering::Relaxed);
            let load = (busy.saturating_sub(*before) * 1000 / window).min(1000) as u32;
            each.load.store(load, Ordering::Relaxed);
            *before = busy;
        }
        let now = coarse_ms();
        let load = |each: &Arc<Loop>| each.load.load(Ordering::Relaxed);
        let free: Vec<&Arc<Loop>> = loops.iter().filter(|each| !each.caught(now)).collect();
        if let Some(busy) = free.iter().find(|each| load(each) > SPILL) {
            if let Some(roomy) = free.iter().find(|each| load(each) < ROOM) {
                Self::move_idle(busy, roomy, false);
            }
            return;
        }
        let Some(first) = free.iter().find(|each| load(each) < ROOM) else {
            return;
        };
        for quiet in free
            .iter()
            .skip_while(|each| !Arc::ptr_eq(each, first))
            .skip(1)
        {
            if load(quiet) < GATHER {
                Self::move_idle(quiet, first, true);
            }
        }
    }
}

/// Moves what has not started on a caught loop to a free one.
fn watchdog(set: Weak<Set>) {
    let mut busy_before = Vec::new();
    let mut weighed = Instant::now();
    let mut round = 0;
    loop {
        thread::sleep(WATCH_EVERY);
        let Some(set) = set.upgrade() else { return };
        round += 1;
        if round % WEIGH_EVERY == 0 {
            set.weigh(&mut busy_before, weighed.elapsed());
            weighed = Instant::now();
        }
        let now = coarse_ms();
        let caught: Vec<Arc<Loop>> = set
            .loops
            .read()
            .iter()
            .filter(|each| each.caught(now))
            .cloned()
            .collect();
        for stuck in caught {
            // Wake-ups are for its own suspended coroutines: they stay.
            let mut moving: Vec<Work> = {
                let mut inbox = stuck.inbox.lock();
                let (mine, movable) = std::mem::take(&mut *inbox)
                    .into_iter()
                    .partition(|work| matches!(work, Work::Wake(_)));
                *inbox = mine;
                movable
            };
            moving.extend(stuck.take_idle(1).into_iter().map(Work::Park));
            if moving.is_empty() {
                continue;
            }
            let to = set.free_loop();
            if Arc::ptr_eq(&to, &stuck) {
                // Nowhere better (every loop caught, at the thread limit): it stays.
                stuck.inbox.lock().extend(moving);
                continue;
            }
            tracing::debug!(
                "a loop is caught in plugin code: moving {} items",
                moving.len()
            );
            for work in moving {
                to.send(work);
            }
        }
    }
}

enum Input {
    Start(Job),
    Woke(Woke),
}

enum Yielded {
    /// Suspended in [`suspend_until`].
    Waiting,
    /// Its job is done; it waits for the next.
    Finished,
}

type Task = Coroutine<Input, Yielded, ()>;

struct Slot {
    coroutine: Option<Task>,
    /// The current job's waker: a new one for each job, so a late wake-up of an earlier event
    /// does not reach the next one.
    waker: Arc<Waker>,
    /// Set while suspended in a wait: what may end it.
    wait: Option<Wait>,
}

struct Wait {
    on_waker: bool,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
    /// The task running now on this loop thread.
    static RUNNING: Cell<Option<usize>> = const { Cell::new(None) };
    /// Its yielder, for [`suspend`].
    static YIELDER: Cell<*const Yielder<Input, Yielded>> = const { Cell::new(std::ptr::null()) };
}

/// A loop thread's own side; only its thread (and its coroutines) touch it.
struct Local {
    me: Arc<Loop>,
    tasks: RefCell<Vec<Slot>>,
    /// Tasks with no job, to reuse.
    free: RefCell<Vec<usize>>,
    runnable: RefCell<VecDeque<(usize, Woke)>>,
    /// Deadlines of the suspended waits ([`coarse_ms`]), with their tasks.
    timers: RefCell<BTreeSet<(u64, usize)>>,
    /// Registered descriptors by token; dead entries are swept now and then.
    readiness: RefCell<HashMap<u64, Weak<Readiness>>>,
    registered: Cell<usize>,
}

fn suspend() -> Woke {
    let yielder = YIELDER.get();
    assert!(!yielder.is_null(), "suspend outside a coroutine");
    // SAFETY: set by the running coroutine from the yielder it was given, which lives as long
    // as that coroutine; cleared by the loop whenever no coroutine runs.
    let input = unsafe { &*yielder }.suspend(Yielded::Waiting);
    YIELDER.set(yielder);
    match input {
        Input::Woke(woke) => woke,
        Input::Start(_) => unreachable!("a suspended task is only resumed with a wake-up"),
    }
}

impl Local {
    fn current() -> Option<Rc<Local>> {
        LOCAL.with_borrow(|local| local.clone())
    }

    fn register(&self, watch: &mut Watch) -> Arc<Readiness> {
        if let Some(at) = &watch.at {
            if Arc::ptr_eq(&at.home, &self.me) {
                return Arc::clone(&at.readiness);
            }
        }
        watch.forget();
        let token = self.me.next_token.fetch_add(1, Ordering::Relaxed);
        let readiness = Arc::new(Readiness::default());
        // Whatever arrived before it was registered here is read first.
        readiness.readable.store(true, Ordering::Release);
        // SAFETY: the owner keeps the descriptor open while its Watch lives.
        let fd = unsafe { BorrowedFd::borrow_raw(watch.fd) };
        let edges = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if let Err(error) = self.me.epoll.add(fd, EpollEvent::new(edges, token)) {
            // Never reported readable by epoll: its waits end at their timeouts.
            tracing::warn!("cannot watch a connection: {error}");
        }
        let mut table = self.readiness.borrow_mut();
        table.insert(token, Arc::downgrade(&readiness));
        let registered = self.registered.get() + 1;
        self.registered.set(registered);
        if registered % 4096 == 0 {
            table.retain(|_, readiness| readiness.strong_count() > 0);
        }
        watch.at = Some(Registration {
            home: Arc::clone(&self.me),
            token,
            readiness: Arc::clone(&readiness),
        });
        readiness
    }

    /// Watches an idle connection: reads what it has, and keeps it until Kong sends more.
    fn watch(&self, mut parked: Box<dyn Parked>) {
        let readiness = self.register(parked.watch());
        let token = parked.watch().at.as_ref().map_or(0, |at| at.token);
        // Only this thread handles edges: none can come between the read and the insert. (The
        // read may answer a message and park the connection again, nested: it is then in the
        // table already.)
        if let Some(parked) = parked.readable() {
            readiness.parked.store(true, Ordering::Release);
            self.me.idle.lock().insert(token, parked);
        }
    }

    fn start(&self, job: Job) {
        let reused = self.free.borrow_mut().pop();
        let task = match reused {
            Some(task) => {
                let mut tasks = self.tasks.borrow_mut();
                tasks[task].waker = self.new_waker(task);
                if tasks[task].coroutine.is_none() {
                    tasks[task].coroutine = new_coroutine();
                }
                task
            }
            None => {
                let mut tasks = self.tasks.borrow_mut();
                let task = tasks.len();
                tasks.push(Slot {
                    coroutine: new_coroutine(),
                    waker: self.new_waker(task),
                    wait: None,
                });
                task
            }
        };
        self.resume(task, Input::Start(job));
    }

    fn new_waker(&self, task: usize) -> Arc<Waker> {
        Arc::new(Waker {
            woken: AtomicBool::new(false),
            home: Arc::clone(&self.me),
            task,
        })
    }

    fn resume(&self, task: usize, input: Input) {
        let Some(mut coroutine) = self.tasks.borrow_mut()[task].coroutine.take() else {
            // No stack could be had for it: the job is lost, as a thread that cannot start.
            tracing::error!("cannot run an event: no coroutine stack");
            self.free.borrow_mut().push(task);
            return;
        };
        RUNNING.set(Some(task));
        self.me
            .running_since
            .store(coarse_ms().max(1), Ordering::Release);
        let result = panic::catch_unwind(AssertUnwindSafe(|| coroutine.resume(input)));
        self.me.running_since.store(0, Ordering::Release);
        RUNNING.set(None);
        YIELDER.set(std::ptr::null());
        match result {
            Ok(CoroutineResult::Yield(Yielded::Waiting)) => {
                self.tasks.borrow_mut()[task].coroutine = Some(coroutine);
            }
            Ok(CoroutineResult::Yield(Yielded::Finished)) => {
                let mut free = self.free.borrow_mut();
                if free.len() < POOLED {
                    self.tasks.borrow_mut()[task].coroutine = Some(coroutine);
                }
                free.push(task);
            }
            Ok(CoroutineResult::Return(())) | Err(_) => {
                tracing::error!("internal error: a loop's coroutine ended");
                self.free.borrow_mut().push(task);
            }
        }
    }

    /// Ends `task`'s wait with `woke`, unless it is not waiting (any more).
    fn wake_task(&self, task: usize, woke: Woke) {
        let mut tasks = self.tasks.borrow_mut();
        let Some(slot) = tasks.get_mut(task) else {
            return;
        };
        let wakes = match &slot.wait {
            Some(wait) => woke != Woke::Waker || wait.on_waker,
            None => false,
        };
        if wakes {
            slot.wait = None;
            self.runnable.borrow_mut().push_back((task, woke));
        }
    }

    fn edge(&self, token: u64) {
        let Some(readiness) = self.readiness.borrow().get(&token).and_then(Weak::upgrade) else {
            return;
        };
        readiness.readable.store(true, Ordering::Release);
        if readiness.parked.load(Ordering::Acquire) {
            let parked = self.me.idle.lock().remove(&token);
            if let Some(parked) = parked {
                readiness.parked.store(false, Ordering::Release);
                if let Some(parked) = parked.readable() {
                    readiness.parked.store(true, Ordering::Release);
                    self.me.idle.lock().insert(token, parked);
                }
            }
            return;
        }
        if let Some(task) = readiness.waiter.load(Ordering::Acquire).checked_sub(1) {
            self.wake_task(task, Woke::Readable);
        }
    }

    /// The next timer's wait from now; none when there is none.
    fn next_timeout(&self) -> Option<Duration> {
        let timers = self.timers.borrow();
        let (deadline, _) = timers.first()?;
        Some(Duration::from_millis(deadline.saturating_sub(coarse_ms())))
    }

    fn expire(&self) {
        let now = coarse_ms();
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first() {
                    Some(&(deadline, task)) if deadline <= now => {
                        timers.pop_first();
                        task
                    }
                    _ => break,
                }
            };
            self.wake_task(due, Woke::Timeout);
        }
    }
}

fn new_coroutine() -> Option<Task> {
    let stack = match DefaultStack::new(STACK_BYTES) {
        Ok(stack) => stack,
        Err(error) => {
            tracing::error!("cannot allocate a coroutine stack: {error}");
            return None;
        }
    };
    Some(Coroutine::with_stack(
        stack,
        |yielder: &Yielder<Input, Yielded>, first: Input| {
            let mut input = first;
            loop {
                YIELDER.set(yielder);
                if let Input::Start(job) = input {
                    // Host-side code around the plugin call; plugin panics are caught inside
                    // the plugin. This keeps the coroutine alive if the host side has a bug.
                    if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("internal error: a job on a loop panicked");
                    }
                }
                input = yielder.suspend(Yielded::Finished);
            }
        },
    ))
}

fn run_loop(me: Arc<Loop>) {
    let local = Rc::new(Local {
        me: Arc::clone(&me),
        tasks: RefCell::default(),
        free: RefCell::default(),
        runnable: RefCell::default(),
        timers: RefCell::default(),
        readiness: RefCell::default(),
        registered: Cell::new(0),
    });
    LOCAL.set(Some(Rc::clone(&local)));
    let mut events = vec![EpollEvent::empty(); 256];
    let mut quiet_since = Instant::now();
    let mut trimmed = false;
    let mut awake = coarse_ms();
    loop {
        let work = std::mem::take(&mut *me.inbox.lock());
        let had_work = !work.is_empty();
        for work in work {
            match work {
                Work::Run(job) => local.start(job),
                Work::Park(parked) => local.watch(parked),
                Work::Wake(task) => {
                    let woken = local
                        .tasks
                        .borrow()
                        .get(task)
                        .is_some_and(|slot| slot.waker.woken.load(Ordering::Acquire));
                    if woken {
                        local.wake_task(task, Woke::Waker);
                    }
                }
            }
        }
        loop {
            let next = local.runnable.borrow_mut().pop_front();
            let Some((task, woke)) = next else { break };
            local.resume(task, Input::Woke(woke));
        }
        if !me.inbox.lock().is_empty() {
            continue;
        }
        let idle = local.free.borrow().len() == local.tasks.borrow().len();
        let timeout = match local.next_timeout() {
            Some(timeout) => timeout_ms(timeout),
            None if idle => timeout_ms(TRIM_AFTER),
            None => PollTimeout::NONE,
        };
        // On the coarse clock: a tick falls in a stretch awake in proportion to its length, so
        // the sum over many stretches is right without a timer access per stretch.
        me.busy_ms
            .fetch_add(coarse_ms().saturating_sub(awake), Ordering::Relaxed);
        let waited = me.epoll.wait(&mut events, timeout);
        awake = coarse_ms();
        let ready = match waited {
            Ok(ready) => ready,
            Err(Errno::EINTR) => 0,
            Err(error) => {
                tracing::error!("a loop's epoll failed: {error}");
                thread::sleep(Duration::from_millis(10));
                0
            }
        };
        for event in &events[..ready] {
            match event.data() {
                BELL => {}
                token => local.edge(token),
            }
        }
        local.expire();
        if ready > 0 || had_work {
            quiet_since = Instant::now();
            trimmed = false;
        } else if idle && !trimmed && quiet_since.elapsed() >= TRIM_AFTER {
            memory::give_back_freed();
            trimmed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::{fd::AsRawFd, unix::net::UnixStream};

    /// An idle connection that never gets a message.
    struct Quiet {
        watch: Watch,
        _stream: UnixStream,
        _peer: UnixStream,
    }

    impl Parked for Quiet {
        fn watch(&mut self) -> &mut Watch {
            &mut self.watch
        }

        fn readable(self: Box<Self>) -> Option<Box<dyn Parked>> {
            Some(self)
        }

        fn revisit(self: Box<Self>) {}
    }

    fn quiet() -> Box<dyn Parked> {
        let (stream, peer) = UnixStream::pair().expect("a socket pair");
        Box::new(Quiet {
            watch: Watch::new(stream.as_raw_fd()),
            _stream: stream,
            _peer: peer,
        })
    }

    /// Waits until the loops' idle tables hold `expected`, in order.
    fn idle_counts(loops: &[Arc<Loop>], expected: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let counts: Vec<usize> = loops.iter().map(|each| each.idle.lock().len()).collect();
            if counts == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "idle tables {counts:?}, not {expected:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_busy_loop_spreads_half_its_idle_connections_and_they_gather_back_when_it_is_not() {
        let set = Arc::new(Set {
            loops: RwLock::default(),
            max_threads: 2,
        });
        let (first, second) = (set.start_loop(), set.start_loop());
        let loops = [first.expect("a loop"), second.expect("a loop")];
        for _ in 0..8 {
            set.free_loop().send(Work::Park(quiet()));
        }
        idle_counts(&loops, &[8, 0]);
        let mut busy_before = Vec::new();
        let second_of_time = Duration::from_secs(1);
        set.weigh(&mut busy_before, second_of_time);

        // Awake 95 % of the last second: half its idle connections go to the quiet loop.
        loops[0].busy_ms.fetch_add(950, Ordering::Relaxed);
        set.weigh(&mut busy_before, second_of_time);
        assert!(loops[0].load.load(Ordering::Relaxed) >= 950);
        idle_counts(&loops, &[4, 4]);
        // Full, it takes no new work while the other has room.
        assert!(Arc::ptr_eq(&set.free_loop(), &loops[1]));

        // Both quiet again: the second gives its connections back to the first.
        set.weigh(&mut busy_before, second_of_time);
        idle_counts(&loops, &[8, 0]);
        assert!(Arc::ptr_eq(&set.free_loop(), &loops[0]));
    }
}
