//! The threads plugin code runs on.
//!
//! Plugin handlers are synchronous and block on every PDK call until Kong answers, so each
//! in-flight event holds a thread; so does each busy Kong connection (`serve`). The pool grows on
//! demand up to a limit and idle threads exit, so a burst of slow events cannot starve the others,
//! and no plugin code ever runs on (or blocks) the tokio threads that own the sockets.

use super::memory;
use crossbeam_channel::{Receiver, Sender};
use std::{
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle plugin thread waits for work before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Executor {
    jobs: Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    queue: Receiver<Job>,
    /// Threads waiting for a job: when zero, a submission starts a new thread.
    idle: AtomicUsize,
    threads: AtomicUsize,
    max_threads: usize,
}

impl Executor {
    pub fn new(max_threads: usize) -> Self {
        memory::bound_allocator_arenas();
        let (jobs, queue) = crossbeam_channel::unbounded();
        Executor {
            jobs,
            shared: Arc::new(Shared {
                queue,
                idle: AtomicUsize::new(0),
                threads: AtomicUsize::new(0),
                max_threads: max_threads.max(1),
            }),
        }
    }

    /// Runs `job` on a plugin thread; queued when all `max_threads` are busy.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.jobs
            .send(Box::new(job))
            .expect("the executor owns its receiver");
        if self.shared.idle.load(Ordering::Acquire) == 0 {
            self.grow();
        }
    }

    /// Whether jobs wait for a thread: threads holding idle connections then let them go.
    pub fn has_waiting_jobs(&self) -> bool {
        !self.shared.queue.is_empty()
    }

    fn grow(&self) {
        let shared = &self.shared;
        let started = shared
            .threads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.max_threads).then_some(n + 1)
            });
        let Ok(number) = started else { return };
        let shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("plugin-{number}"))
            .spawn(move || shared.work());
        if let Err(error) = spawned {
            self.shared.threads.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(
                "cannot start a plugin thread: {error}; the event waits for a free one"
            );
        }
    }
}

impl Shared {
    fn work(&self) {
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let job = self.queue.recv_timeout(IDLE_EXIT);
            self.idle.fetch_sub(1, Ordering::AcqRel);
            match job {
                Ok(job) => {
                    // Host-side code around the plugin call; plugin panics are caught inside
                    // the plugin. This keeps the thread alive if the host side has a bug.
                    if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("internal error: a plugin-thread job panicked");
                    }
                }
                Err(_) => {
                    // Exit when idle, but only if no job slipped in meanwhile.
                    self.threads.fetch_sub(1, Ordering::AcqRel);
                    if self.queue.is_empty() {
                        memory::give_back_freed();
                        return;
                    }
                    self.threads.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
}
