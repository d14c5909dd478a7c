//! Answering Kong's requests: the dispatcher and the plugins it serves, their instances, the
//! events that run phase handlers on plugin threads, and the connections those events answer
//! on as they move between threads; statistics and the limits they are counted against.

pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod executor;
pub(crate) mod ids;
pub(crate) mod instances;
pub(crate) mod metrics;
pub(crate) mod place;
pub(crate) mod sharded;
pub(crate) mod throttle;
