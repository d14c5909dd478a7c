//! Answers one Kong request: the RPC methods of protocol.md §7.

use crate::{
    loader::LoadedPlugin,
    runtime::connection::{Conn, Serves},
    runtime::events::{send_next, Next},
    runtime::events::{Answer, Event, Events, Pending, Yield},
    runtime::ids::EventIds,
    runtime::instances::{Adopted, Instances, Live},
    runtime::memory,
    runtime::metrics::{self, Ending, PluginStats},
    runtime::place::Place,
    runtime::status::{InstanceStatus, PluginStatus, Reclaimed, Stats, Status},
    runtime::throttle::Throttle,
    runtime::unix_now,
    wire::protobuf::envelope::{self, Return},
    wire::rpc::{self, MsgId, StepResult},
    wire::{Caller, Message, Protocol, Request},
};
use kong_rust_abi::{Phase, PhaseErrorKind, KONG_500_MESSAGE};
use rmpv::Value;
use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

/// The error reply to a request that would start something while the host stops.
const SHUTTING_DOWN: &str = "kong-rust-host is shutting down";

/// The host this one replaced (`serve --upgrade`), while it still runs events of its own.
pub trait Predecessor: Send + Sync {
    /// Sends it a Step for one of its events and returns its reply as it sent it; blocks.
    fn call_blocking(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, String>;
}

/// What the host enforces, from the command line.
pub struct Policy {
    /// Live instance ids at most; StartInstance beyond it is refused.
    pub max_instances: usize,
    /// Events of one plugin in flight at most, so one stuck plugin cannot hold the host.
    pub max_events_per_plugin: usize,
    /// Plugins whose failures let the request through instead of ending it with a 500.
    pub fail_open: Vec<String>,
}

/// A loaded plugin and its runtime state; it also answers for its events ([`Answer`]).
struct Served {
    plugin: Arc<LoadedPlugin>,
    /// Its events in flight, counted against `max_events_per_plugin`.
    in_flight: Arc<AtomicUsize>,
    fail_open: bool,
    overload_warnings: Throttle,
    /// At most one line a second about events Kong walked away from.
    reclaim_warnings: Throttle,
    stats: PluginStats,
    /// The event table, which its answers end events in. Weak: the table holds events, which
    /// hold this; a strong reference would make a cycle that outlives the dispatcher.
    events: Weak<Events>,
}

pub struct Dispatcher {
    plugins: HashMap<String, Arc<Served>>,
    max_instances: usize,
    max_events_per_plugin: usize,
    instances: Arc<Instances>,
    pub events: Arc<Events>,
    event_ids: EventIds,
    /// Set on SIGTERM: in-flight events finish, new ones are refused.
    draining: AtomicBool,
    /// The host this one replaced, while it still runs events of its own: Steps for events
    /// unknown here go to it.
    predecessor: parking_lot::Mutex<Option<Arc<dyn Predecessor>>>,
}

impl Answer for Served {
    fn answer<'a>(&self, event: &Event, yielded: Yield<'a>) -> Next<'a> {
        let plugin = &self.plugin.name;
        let Some(events) = self.events.upgrade() else {
            return Next::Error(SHUTTING_DOWN.into());
        };
        let phase = event.phase;
        let ended = |ending| self.stats.event(phase, ending, event.started.elapsed());
        match yielded {
            Yield::Call {
                method,
                args,
                terminal,
            } => {
                self.stats.pdk_call(phase);
                if terminal {
                    events.finish(event.id);
                    ended(Ending::Exited);
                } else {
                    events.waiting_for_kong(event, method);
                }
                Next::Call {
                    method,
                    args: Cow::Borrowed(args),
                }
            }
            Yield::Done(Ok(())) => {
                events.finish(event.id);
                ended(Ending::Returned);
                Next::Ret
            }
            Yield::Done(Err(error)) => {
                events.finish(event.id);
                ended(match error.kind {
                    PhaseErrorKind::Panicked => Ending::Panicked,
                    // Failed, and any kind a later ABI release adds.
                    _ => Ending::Failed,
                });
                // The plugin reports panics as "panicked at <file:line:col>: <message>".
                let what = match (error.kind, error.message.strip_prefix("panicked at ")) {
                    (PhaseErrorKind::Panicked, Some(located)) => format!("panicked at {located}"),
                    (PhaseErrorKind::Panicked, None) => format!("panicked: {}", error.message),
                    _ => format!("failed: {}", error.message),
                };
                tracing::error!(plugin = %plugin, %phase, event = event.id, "handler {what}");
                match exit_args(phase, 500, KONG_500_MESSAGE).filter(|_| !self.fail_open) {
                    Some(args) => Next::Call {
                        method: EXIT,
                        args: Cow::Owned(args),
                    },
                    None => Next::Ret,
                }
            }
            Yield::Stuck => {
                events.finish(event.id);
                ended(Ending::Abandoned);
                let secs = events.timeouts.handler.as_secs();
                tracing::error!(plugin = %plugin, %phase, event = event.id, "handler did not answer within {secs}s; event abandoned (its plugin code blocked that long, or waits for a lock that a request suspended on the same thread holds across a PDK call)");
                Next::Error(format!(
                    "{plugin} {phase}: handler did not answer within {secs}s"
                ))
            }
        }
    }
}

/// The PDK call that ends a failed or refused request with a status of the host's.
const EXIT: &str = "kong.response.exit";

impl Dispatcher {
    pub fn new(
        plugins: Vec<LoadedPlugin>,
        instances: Instances,
        events: Events,
        policy: Policy,
    ) -> Self {
        let events = Arc::new(events);
        Dispatcher {
            plugins: plugins
                .into_iter()
                .map(|p| {
                    let served = Served {
                        fail_open: policy.fail_open.contains(&p.name),
                        plugin: Arc::new(p),
                        in_flight: Arc::default(),
                        overload_warnings: Throttle::default(),
                        reclaim_warnings: Throttle::default(),
                        stats: PluginStats::default(),
                        events: Arc::downgrade(&events),
                    };
                    (served.plugin.name.clone(), Arc::new(served))
                })
                .collect(),
            max_instances: policy.max_instances,
            max_events_per_plugin: policy.max_events_per_plugin,
            instances: Arc::new(instances),
            events,
            event_ids: EventIds::starting_now(),
            draining: AtomicBool::new(false),
            predecessor: parking_lot::Mutex::new(None),
        }
    }

    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// Whether `message` is a Step of an event running here.
    pub fn owns_step(&self, message: &Message) -> bool {
        let Message::MsgPack(message) = message else {
            return false;
        };
        rpc::step_event_id(message).is_some_and(|id| self.events.get(id).is_some())
    }

    /// Takes over the instance ids of the host this one replaced, so Kong's workers keep
    /// using them; an id whose plugin or config no longer loads is left for Kong to restart
    /// ("no plugin instance", protocol.md §9.4).
    pub fn adopt(&self, adopted: Vec<Adopted>) {
        let count = adopted.len();
        let mut kept = 0;
        for Adopted { id, plugin, config } in adopted {
            let Some(served) = self.plugins.get(&plugin) else {
                continue;
            };
            match self
                .instances
                .adopt(&served.plugin, config.to_string().as_bytes(), id)
            {
                Ok(_) => kept += 1,
                Err(error) => tracing::warn!("instance {id} of {plugin} not taken over: {error}"),
            }
        }
        if count > 0 {
            tracing::info!("took over {kept} of {count} instance ids");
        }
    }

    /// Sends Steps of unknown events to the host this one replaced (`serve --upgrade`).
    pub fn forward_to_predecessor(&self, predecessor: Arc<dyn Predecessor>) {
        *self.predecessor.lock() = Some(predecessor);
    }

    /// The predecessor has no event left.
    pub fn forget_predecessor(&self) {
        self.predecessor.lock().take();
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Answers one message Kong sent on `conn`, in the calling coroutine: HandleEvent runs
    /// its handler here, StartInstance the plugin's constructor. Returns the connection while
    /// this coroutine still holds it (it answered last on it); `None` when it went elsewhere (to
    /// the event a Step belongs to) or closed.
    pub fn dispatch(&self, conn: Conn, message: Message) -> Option<Conn> {
        let (caller, request) = match message {
            Message::MsgPack(message) => match rpc::parse(message) {
                Ok((msgid, request)) => (Caller::MsgPack(msgid), request),
                Err(refused) => return conn.refuse(refused),
            },
            // Nothing answers a call that cannot be read: Kong's read fails when it closes.
            Message::ProtoBuf(payload) => match envelope::parse(&payload) {
                Ok((sequence, request)) => (Caller::ProtoBuf(sequence), request),
                Err(reason) => {
                    tracing::warn!("closing a connection: {reason}");
                    return None;
                }
            },
        };
        let request = match (request.into_step(), caller) {
            (Ok((event_id, result)), Caller::MsgPack(msgid)) => {
                return self.step(msgid, event_id, result, conn)
            }
            (Ok(_), Caller::ProtoBuf(_)) => unreachable!("ProtoBuf:1 has no Steps"),
            (Err(request), _) => request,
        };
        let in_event = matches!(request, Request::HandleEvent { .. });
        let reply = match request {
            Request::StartInstance { name, config } => self
                .start_instance(&conn.serves, &name, config)
                .map(|id| Reply::Instance {
                    id,
                    name: String::from_utf8_lossy(&name).into_owned(),
                    started_at: unix_now(),
                }),
            Request::CloseInstance { instance_id } => {
                if self.instances.close(instance_id) {
                    Ok(Reply::Nil)
                } else {
                    Err(no_instance(instance_id))
                }
            }
            Request::HandleEvent {
                instance_id,
                event_name,
            } => match self.prepare_event(instance_id, &event_name) {
                Ok(Prepared::Run(start)) => return self.run_event(start, caller, conn),
                Ok(Prepared::Answered { event_id, next }) => {
                    let kong_wait = self.events.timeouts.kong_step;
                    return send_next(caller, event_id, next, conn, kong_wait);
                }
                Err(error) => Err(error),
            },
            Request::Step { .. } | Request::StepError { .. } => unreachable!("taken above"),
            Request::GetStatus => Ok(Reply::Status(self.status().to_value())),
            Request::GetInstanceStatus { instance_id } => self
                .instances
                .ids()
                .into_iter()
                .find(|status| status.id == instance_id)
                .map(|status| Reply::Instance {
                    id: status.id,
                    name: status.plugin,
                    started_at: status.started_at,
                })
                .ok_or_else(|| no_instance(instance_id)),
        };
        answer(conn, caller, reply, in_event)
    }

    /// `serves`: what the socket the request came in on serves. The constructor is plugin
    /// code: it runs in this coroutine, and stalls only this connection.
    fn start_instance(&self, serves: &Serves, name: &[u8], config: Vec<u8>) -> Result<i64, String> {
        let name = String::from_utf8_lossy(name);
        if let Serves::One(served) = serves {
            if **served != *name {
                return Err(format!("this socket serves plugin {served}, not {name}"));
            }
        }
        let plugin = self
            .plugins
            .get(name.as_ref())
            .map(|s| Arc::clone(&s.plugin))
            .ok_or_else(|| {
                let mut known: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
                known.sort();
                format!(
                    "unknown plugin {name}; this host serves {}",
                    known.join(", ")
                )
            })?;
        if self.draining.load(Ordering::Acquire) {
            return Err(SHUTTING_DOWN.into());
        }
        let live = self.instances.count();
        if live >= self.max_instances {
            tracing::warn!(plugin = %name, "StartInstance refused: {live} live instance ids (--max-instances)");
            return Err(format!(
                "kong-rust-host instance limit reached ({live} live instance ids); raise --max-instances"
            ));
        }
        let plugin_name = &plugin.name;
        let result = self.instances.start(&plugin, &config);
        match &result {
            Ok(id) => tracing::debug!(plugin = %plugin_name, id, "started instance"),
            Err(error) => tracing::error!(plugin = %plugin_name, "StartInstance refused: {error}"),
        }
        result.map_err(|error| format!("{plugin_name}: {error}"))
    }

    /// What a HandleEvent asks for: an event to run, or an answer at once.
    fn prepare_event(&self, instance_id: i64, event_name: &[u8]) -> Result<Prepared, String> {
        let instance = self
            .instances
            .get(instance_id)
            .ok_or_else(|| no_instance(instance_id))?;
        let phase = Phase::from_name(event_name).ok_or_else(|| {
            format!(
                "unknown event name {:?}",
                String::from_utf8_lossy(event_name)
            )
        })?;
        let event_id = self.event_ids.next();
        if !instance.plugin.implements(phase) {
            return Ok(Prepared::Answered {
                event_id,
                next: Next::Ret,
            });
        }
        if self.draining.load(Ordering::Acquire) {
            return Err(SHUTTING_DOWN.into());
        }
        let served = &self.plugins[&instance.plugin.name];
        let place = match Place::take(&served.in_flight, self.max_events_per_plugin) {
            Some(place) => place,
            // Only handlers running plugin code are load: an event Kong walked away from
            // gives its place up.
            None => match self.events.make_room(&served.plugin) {
                Some((place, walked_away)) => {
                    self.reclaimed(&walked_away);
                    place
                }
                None => {
                    return Ok(Prepared::Answered {
                        event_id,
                        next: self.overloaded(served, phase),
                    })
                }
            },
        };
        Ok(Prepared::Run(EventStart {
            event_id,
            instance,
            phase,
            place,
            served: Arc::clone(served),
        }))
    }

    /// Runs the event's handler in this coroutine; returns the connection it holds at the end.
    fn run_event(&self, start: EventStart, caller: Caller, conn: Conn) -> Option<Conn> {
        let EventStart {
            event_id,
            instance,
            phase,
            place,
            served,
        } = start;
        let pending = Pending { caller, conn };
        let answer: Arc<dyn Answer> = served;
        self.events
            .run(event_id, instance, phase, place, pending, answer)
    }

    /// A plugin at its limit of events in flight: its request fails like a failed handler would
    /// (503 where the phase can answer, unless the plugin fails open), and nothing is queued.
    fn overloaded(&self, served: &Served, phase: Phase) -> Next<'static> {
        let limit = self.max_events_per_plugin;
        served.stats.event(phase, Ending::Refused, Duration::ZERO);
        if served.overload_warnings.allow() {
            tracing::warn!(plugin = %served.plugin.name, %phase, "{limit} events in flight (--max-events-per-plugin): refusing new ones");
        }
        if served.fail_open {
            return Next::Ret;
        }
        match exit_args(phase, 503, "Service Unavailable") {
            Some(args) => Next::Call {
                method: EXIT,
                args: Cow::Owned(args),
            },
            None => Next::Error(format!(
                "{} has {limit} events in flight; refused",
                served.plugin.name
            )),
        }
    }

    /// Delivers a Step to its event's handler, which answers it on `conn`; Steps of events the
    /// host this one replaced still runs are forwarded to it.
    fn step(&self, msgid: MsgId, event_id: u64, result: StepResult, conn: Conn) -> Option<Conn> {
        // A ProtoBuf:1 event takes no Steps: its PDK calls are answered on its own connection.
        let msgpack_event = self
            .events
            .get(event_id)
            .filter(|e| e.protocol == Protocol::MsgPack);
        let Some(event) = msgpack_event else {
            let predecessor = self.predecessor.lock().clone();
            let reply = match predecessor {
                Some(forwarder) => {
                    let request = rpc::step_request(
                        msgid,
                        event_id,
                        result.as_deref().map_err(String::as_str),
                    );
                    forwarder.call_blocking(&request, self.events.timeouts.handler)
                }
                None => Err(format!("event id {event_id} not found")),
            };
            return match reply {
                Ok(reply) => conn.answer(&reply),
                Err(error) => conn.answer(&rpc::error_reply(msgid, &error)),
            };
        };
        self.resume(&event, msgid, result, conn)
    }

    fn resume(&self, event: &Event, msgid: MsgId, result: StepResult, conn: Conn) -> Option<Conn> {
        let caller = Caller::MsgPack(msgid);
        match self.events.resume(event, result, Pending { caller, conn }) {
            Ok(()) => None,
            Err((error, conn)) => conn.answer(&rpc::error_reply(msgid, &error)),
        }
    }

    /// Removes the events Kong stopped answering, logging and counting each.
    pub fn reclaim_abandoned(&self) {
        for (event, handler_silent) in self.events.reap() {
            if handler_silent {
                // Kong still waits for the handler's answer: it gets the error instead, and
                // its connection is watched again.
                if let Ok(Some(conn)) = event.reply(Yield::Stuck) {
                    conn.park();
                }
                continue;
            }
            self.reclaimed(&event);
        }
    }

    /// Counts and (at most once a second per plugin) logs an event Kong stopped answering,
    /// naming the PDK call it never answered.
    fn reclaimed(&self, event: &Event) {
        let served = &self.plugins[&event.instance.plugin.name];
        let phase = event.phase;
        let method = event.waiting_on().unwrap_or_default();
        served
            .stats
            .event(phase, Ending::Abandoned, event.started.elapsed());
        let count = served.stats.reclaimed(phase, &method);
        if served.reclaim_warnings.allow() {
            tracing::warn!(
                "{} ({phase}): Kong never answered {method}; it most likely raised inside Kong \
                 (see Kong's error log). {count} events reclaimed at this call so far",
                served.plugin.name
            );
        }
    }

    /// The Prometheus text exposition of every plugin's statistics.
    pub fn prometheus(&self) -> String {
        let mut plugins: Vec<(&str, &PluginStats)> = self
            .plugins
            .iter()
            .map(|(name, s)| (name.as_str(), &s.stats))
            .collect();
        plugins.sort_by_key(|(name, _)| *name);
        metrics::prometheus(plugins, self.events.in_flight())
    }

    /// `plugin.GetStatus`: the reference servers' shape (protocol.md §14) plus sharing counters.
    fn status(&self) -> Status<'_> {
        let ids = self.instances.ids();
        let live = self.instances.live_counts();
        let plugins = self
            .plugins
            .iter()
            .map(|(name, served)| {
                let plugin = &served.plugin;
                let instances = ids
                    .iter()
                    .filter(|status| &status.plugin == name)
                    .map(|status| InstanceStatus {
                        id: status.id,
                        name,
                        start_time: status.started_at,
                        config: status.config.to_string(),
                        shared_instance: status.instance as u64,
                    })
                    .collect();
                let entry = PluginStatus {
                    name,
                    version: &plugin.version,
                    path: plugin.path.display().to_string(),
                    instances,
                    live_instances: live.get(name).copied().unwrap_or(0),
                    constructed: self.instances.constructed(name),
                    stats: Stats::of(&served.stats),
                    reclaimed: Reclaimed::of(&served.stats),
                };
                (name.as_str(), entry)
            })
            .collect();
        Status {
            pid: std::process::id(),
            plugins,
            events_in_flight: self.events.in_flight(),
            allocated_bytes: memory::allocated_bytes(),
        }
    }
}

/// A HandleEvent that runs a handler: what it runs, and the place it holds.
struct EventStart {
    event_id: u64,
    instance: Arc<Live>,
    phase: Phase,
    place: Place,
    served: Arc<Served>,
}

enum Prepared {
    Run(EventStart),
    /// Answered at once, without running plugin code (a phase the plugin does not implement,
    /// or a plugin at its limit).
    Answered {
        event_id: u64,
        next: Next<'static>,
    },
}

/// What a request other than a HandleEvent or Step is answered with.
enum Reply {
    /// StartInstance's instance (and ProtoBuf:1's `cmd_get_instance_status`).
    Instance {
        id: i64,
        name: String,
        started_at: u64,
    },
    Nil,
    /// MsgPack:1's `plugin.GetStatus`.
    Status(Value),
}

/// Writes `reply` to `caller` on `conn` in its protocol; the connection, unless it closed.
/// `in_event`: the request was a HandleEvent, whose ProtoBuf:1 caller reads PDK calls first.
fn answer(
    conn: Conn,
    caller: Caller,
    reply: Result<Reply, String>,
    in_event: bool,
) -> Option<Conn> {
    match caller {
        Caller::MsgPack(msgid) => {
            let bytes = match reply {
                Ok(Reply::Instance {
                    id,
                    name,
                    started_at,
                }) => {
                    let result = Value::Map(vec![
                        (Value::from("Id"), Value::from(id)),
                        (Value::from("Name"), Value::from(name)),
                        (Value::from("StartTime"), Value::from(started_at)),
                    ]);
                    rpc::result_reply(msgid, &result)
                }
                Ok(Reply::Nil) => rpc::result_reply(msgid, &Value::Nil),
                Ok(Reply::Status(status)) => rpc::result_reply(msgid, &status),
                Err(error) => rpc::error_reply(msgid, &error),
            };
            conn.answer(&bytes)
        }
        Caller::ProtoBuf(sequence) => match reply {
            Ok(Reply::Instance {
                id,
                name,
                started_at,
            }) => {
                let instance = Return::Instance {
                    id,
                    name: &name,
                    started_at,
                };
                conn.answer(&envelope::reply(sequence, instance))
            }
            Ok(Reply::Nil) => conn.answer(&envelope::reply(sequence, Return::Empty)),
            Ok(Reply::Status(_)) => unreachable!("GetStatus is MsgPack:1's"),
            // Kong's own rule (pb_rpc.lua, `handle_event`): a read error naming "closed"
            // restarts the instance and replays the phase, which is what a lost instance needs.
            Err(error) if error.contains(NO_INSTANCE) => {
                tracing::warn!(
                    "closing a ProtoBuf:1 connection, so Kong starts a new instance: {error}"
                );
                None
            }
            Err(error) => {
                tracing::warn!("failed a ProtoBuf:1 call: {error}");
                conn.answer(&envelope::failed(in_event))
            }
        },
    }
}

/// Kong treats this substring as "restart the instance and replay the phase" (protocol.md §9.4):
/// use it for unknown instance ids only.
fn no_instance(id: i64) -> String {
    format!("{NO_INSTANCE} {id}")
}

const NO_INSTANCE: &str = "no plugin instance";

/// The `kong.response.exit(status, {message = ...})` args that end a failed request, where the
/// phase can still answer the client. A failed handler ends its request this way (fail closed):
/// Kong itself would fail open on an error reply (protocol.md §12), letting a request through that
/// an authentication plugin meant to stop.
fn exit_args(phase: Phase, status: u16, message: &str) -> Option<Vec<u8>> {
    if !phase.can_answer_client() {
        return None;
    }
    let args = Value::Array(vec![
        Value::from(status),
        Value::Map(vec![(Value::from("message"), Value::from(message))]),
    ]);
    let mut encoded = Vec::with_capacity(48);
    rmpv::encode::write_value(&mut encoded, &args).expect("Vec write");
    Some(encoded)
}
