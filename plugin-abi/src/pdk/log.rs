use super::Bridge;
use crate::Result;
use rmpv::Value;
use std::fmt::Display;

/// `kong.log`: lines in Kong's error log, tagged with the plugin's name.
///
/// Messages are formatted on the Rust side: Kong would print a table as `table: 0x…`.
#[derive(Clone, Copy)]
pub struct Log<'a> {
    bridge: Bridge<'a>,
}

macro_rules! levels {
    ($($level:ident),*) => {$(
        #[doc = concat!("`kong.log.", stringify!($level), "`")]
        pub fn $level(&self, message: impl Display) -> Result<()> {
            self.write(concat!("kong.log.", stringify!($level)), message)
        }
    )*};
}

impl<'a> Log<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Log { bridge }
    }

    levels!(alert, crit, err, warn, notice, info, debug);

    fn write(&self, method: &str, message: impl Display) -> Result<()> {
        self.bridge
            .call_unit(method, vec![Value::from(message.to_string())])
    }
}
