//! What `#[kong_rust_pdk::plugin]` expands to calls into here: the root module's functions, each
//! of which catches panics so that nothing unwinds across the `extern "C"` boundary (that would
//! abort the host and every other plugin with it).

use crate::{
    abi::{
        HostRef, Phase, PhaseError, PhaseErrorKind, PluginInfo, PluginInstance, PluginInstanceBox,
        PluginInstance_TO, PluginMod, PluginModRef,
    },
    pdk::{run_batched, Kong},
    schema::{plugin_schema, Schema},
    Plugin,
};
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use std::{
    any::Any,
    cell::{Cell, RefCell},
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

/// Metadata the `#[plugin]` attribute writes from its arguments and from the phase methods the
/// `impl Plugin` block defines.
pub trait Exported: Plugin {
    const NAME: &'static str;
    const VERSION: &'static str;
    const PRIORITY: i64;
    const PHASES: &'static [Phase];
}

/// The root module of plugin `P`: what its `.so` exports, and what a dedicated server
/// (`kong_rust_host::dedicated::main`) serves when the plugin is compiled into it.
pub fn root_module<P: Exported>() -> PluginModRef {
    install_panic_hook();
    PluginMod {
        info: info::<P>,
        new_instance: new_instance::<P>,
    }
    .leak_into_prefix()
}

/// The query-command description of `P`, also what the host serves.
pub fn plugin_info<P: Exported>() -> PluginInfo {
    PluginInfo {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        priority: P::PRIORITY,
        phases: P::PHASES.iter().copied().collect::<RVec<_>>(),
        schema_json: plugin_schema(P::NAME, P::Config::schema())
            .to_string()
            .into(),
    }
}

extern "C" fn info<P: Exported>() -> RResult<PluginInfo, RString> {
    guarded(plugin_info::<P>)
        .map_err(|panic| RString::from(format!("reading the plugin's metadata panicked: {panic}")))
        .into()
}

extern "C" fn new_instance<P: Exported>(
    config_json: RStr<'_>,
) -> RResult<PluginInstanceBox, RString> {
    let created = guarded(|| {
        let config = kong_rust_schema::decode::<P::Config>(config_json.as_str())?;
        let plugin = P::new(config).map_err(|error| format!("{error:#}"))?;
        Ok::<_, String>(PluginInstance_TO::from_value(Instance(plugin), TD_Opaque))
    });
    match created {
        Ok(Ok(instance)) => RResult::ROk(instance),
        Ok(Err(message)) => RResult::RErr(message.into()),
        Err(panic) => RResult::RErr(format!("the plugin's constructor panicked: {panic}").into()),
    }
}

/// Calls `plugin`'s handler for `phase`: what the host runs, and the test harness too.
pub fn run_phase<P: Plugin>(plugin: &P, phase: Phase, kong: &Kong) -> crate::Result<()> {
    match phase {
        Phase::Certificate => plugin.certificate(kong),
        Phase::Rewrite => plugin.rewrite(kong),
        Phase::Access => plugin.access(kong),
        Phase::Response => plugin.response(kong),
        Phase::Preread => plugin.preread(kong),
        Phase::Log => plugin.log(kong),
        // A phase added by a later ABI release, which this plugin cannot implement.
        _ => Err(crate::Error::msg(format!(
            "this plugin does not know {phase}"
        ))),
    }
}

/// A plugin value behind the ABI trait object.
struct Instance<P>(P);

impl<P: Plugin> PluginInstance for Instance<P> {
    fn run_phase(&self, phase: Phase, host: HostRef<'_>) -> RResult<(), PhaseError> {
        let outcome = guarded(|| run_batched(&host, phase, |kong| run_phase(&self.0, phase, kong)));
        let (kind, message) = match outcome {
            Ok(Ok(())) => return RResult::ROk(()),
            // With its causes: `loading keys: no such file`.
            Ok(Err(error)) => (PhaseErrorKind::Failed, format!("{error:#}")),
            Err(panic) => (PhaseErrorKind::Panicked, panic),
        };
        RResult::RErr(PhaseError {
            kind,
            message: message.into(),
        })
    }
}

thread_local! {
    /// How many handlers are inside `guarded` on this thread: the hook then records instead of
    /// printing. A count, not a flag: the host runs handlers as coroutines that interleave on a
    /// thread (one starts while another waits on Kong, and either may end first).
    static GUARDED: Cell<usize> = const { Cell::new(0) };
    /// The last caught panic's message with its location, for the host's log line.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message (`panicked at src/lib.rs:10:5: boom`).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.set(GUARDED.get() + 1);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.set(GUARDED.get() - 1);
    result.map_err(|payload| {
        LAST_PANIC
            .take()
            .unwrap_or_else(|| panic_message(payload.as_ref()))
    })
}

/// Takes the message of the panic this handler is unwinding from, to put back with
/// [`restore_panic`] after a PDK call: other handlers may run on this thread meanwhile.
pub(crate) fn take_panic() -> Option<String> {
    LAST_PANIC.take()
}

pub(crate) fn restore_panic(message: Option<String>) {
    LAST_PANIC.set(message);
}

/// The message of a caught panic's payload (a `&str` or `String`, as `panic!` makes them).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

/// This `.so` has its own copy of std and so its own panic hook: make it record the message and
/// location of panics inside handlers (the host logs them in one line) and leave every other
/// panic to the previous hook.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.get() > 0 {
                let message = info.to_string().replace('\n', " ");
                LAST_PANIC.set(Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// The `.so` export `#[plugin]` writes: the abi_stable library header the host looks up by name
/// (what `#[export_root_module]` generates, written out so plugin crates need no direct
/// abi_stable dependency).
///
/// The name is the same in every plugin crate, so two plugin crates linked into one test binary
/// would define it twice. A build that links the harness (`kong-rust-pdk-test` turns on the
/// `test-harness` feature) is such a build, and has no use for the export: there this expands to
/// nothing. `cargo build` of a plugin crate, where the harness is only a dev-dependency, exports
/// it.
#[cfg(not(feature = "test-harness"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_library_header {
    ($header:ident, $plugin:ty) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static $header: $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module(
            ) -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(
                    $crate::__private::root_module::<$plugin>,
                )
            }
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<
                    $crate::__private::abi::PluginModRef,
                >(
                    erased_root_module,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// In a build that links the harness: no `.so` export (see above).
#[cfg(feature = "test-harness")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_library_header {
    ($header:ident, $plugin:ty) => {};
}

#[cfg(test)]
mod tests {
    use super::*;
    use corosensei::{Coroutine, CoroutineResult, Yielder};

    type Handler = Coroutine<(), (), Result<(), String>>;

    /// A handler as the host runs it: a coroutine that suspends where a PDK call waits on Kong.
    fn handler(panics: bool) -> Handler {
        Coroutine::new(move |kong: &Yielder<(), ()>, ()| {
            guarded(|| {
                kong.suspend(());
                assert!(!panics, "the second handler fails");
            })
        })
    }

    #[test]
    fn a_panic_in_a_handler_interleaved_with_another_is_recorded_with_its_location() {
        install_panic_hook();
        let (mut first, mut second) = (handler(false), handler(true));
        // The first starts, the second starts, the first ends, then the second panics.
        first.resume(());
        second.resume(());
        assert!(matches!(first.resume(()), CoroutineResult::Return(Ok(()))));
        let CoroutineResult::Return(Err(message)) = second.resume(()) else {
            panic!("the second handler's panic was not caught");
        };
        assert!(
            message.starts_with("panicked at pdk/src/export.rs:"),
            "{message}"
        );
        assert!(message.ends_with("the second handler fails"), "{message}");
    }
}
