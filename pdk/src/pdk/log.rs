use super::{value, Bridge};
use crate::{Error, ErrorKind, Result};
use rmpv::Value;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Display;

/// `kong.log`: lines in Kong's error log, tagged with the plugin's name, and the log
/// serializer's output that logging plugins send elsewhere.
///
/// Messages are formatted on the Rust side: Kong would print a table as `table: 0x…`.
/// `kong.log(...)` itself is [`notice`](Log::notice). Every level works in every phase.
#[derive(Clone, Copy)]
pub struct Log<'a> {
    bridge: Bridge<'a>,
}

macro_rules! levels {
    ($($level:ident),*) => {$(
        #[doc = concat!("A line at `", stringify!($level), "` level (`kong.log.", stringify!($level), "`).")]
        pub fn $level(&self, message: impl Display) -> Result<()> {
            self.write(concat!("kong.log.", stringify!($level)), message)
        }
    )*};
}

/// How [`set_serialize_value`](Log::set_serialize_value) treats a key that exists or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerializeMode {
    /// Set it in any case (Kong's default).
    Set,
    /// Set it only when the serializer output has no such key.
    Add,
    /// Set it only when the serializer output already has the key.
    Replace,
}

impl SerializeMode {
    /// Kong's `mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SerializeMode::Set => "set",
            SerializeMode::Add => "add",
            SerializeMode::Replace => "replace",
        }
    }
}

impl<'a> Log<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Log { bridge }
    }

    levels!(alert, crit, err, warn, notice, info, debug);

    /// A deprecation warning (`warn` level, at most once per message per worker).
    pub fn deprecation(&self, message: impl Display) -> Result<()> {
        self.write("kong.log.deprecation", message)
    }

    /// Sets `key` (dotted for nesting: `request.headers.x-user`) in the serializer output that
    /// [`serialize`](Log::serialize) and logging plugins see. A value that serializes to
    /// nothing removes the key (only with [`SerializeMode::Set`]: Kong would lose the mode after
    /// a `nil` value: a Lua argument list ends at its first `nil`). Phases: certificate, rewrite, access, response (no
    /// effect in log: the output was already captured).
    pub fn set_serialize_value<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        mode: SerializeMode,
    ) -> Result<()> {
        const METHOD: &str = "kong.log.set_serialize_value";
        let mut args = vec![Value::from(key), value::encode(METHOD, value)?];
        if mode != SerializeMode::Set {
            if args[1].is_nil() {
                return Err(Error::new(
                    ErrorKind::InvalidCall,
                    format!("{METHOD}({key:?}): a nil value can only be set with mode \"set\""),
                ));
            }
            let options = Value::Map(vec![(Value::from("mode"), Value::from(mode.as_str()))]);
            args.push(options);
        }
        self.bridge.call_unit(METHOD, args)
    }

    /// The log serializer's output for this request (request, response, latencies, route,
    /// consumer, …), decoded into `T` (`serde_json::Value` takes anything). Phase: log only.
    pub fn serialize<T: DeserializeOwned>(&self) -> Result<T> {
        self.bridge.call_as(
            "kong.log.serialize",
            vec![],
            |serialized| match serialized {
                // Kong's bridge sends the JSON text; accept the table too.
                Value::String(text) => serde_json::from_slice(text.as_bytes())
                    .map_err(|error| format!("JSON that does not fit: {error}")),
                table => value::decode(table),
            },
        )
    }

    fn write(&self, method: &str, message: impl Display) -> Result<()> {
        self.bridge
            .call_unit(method, vec![Value::from(message.to_string())])
    }
}
