//! Kong schemas derived from Rust types: the plugin schema Kong reads from the query command and
//! checks against its metaschema.
//!
//! `#[derive(Schema)]` on a config struct implements [`Schema`] as a Kong `record` whose fields
//! come from the struct's fields, each through the [`Schema`] impl of its type; on an enum of
//! unit variants it implements a `string` field with `one_of` the variant names. The derive's
//! documentation lists the `#[schema(...)]` attributes.
//!
//! [`check_plugin_schema`] checks a whole plugin schema against the rules Kong's metaschema
//! applies when it loads an external plugin, so a schema Kong would refuse is caught early.
//!
//! ```
//! use kong_rust_pdk::prelude::*;
//! use kong_rust_pdk::schema::{check_plugin_schema, plugin_schema};
//!
//! #[derive(Deserialize, Schema)]
//! #[serde(rename_all = "snake_case")]
//! enum Mode {
//!     Fast,
//!     Thorough,
//! }
//!
//! #[derive(Deserialize, Schema)]
//! struct Config {
//!     /// Where requests are forwarded to.
//!     #[schema(match = "^https?://", len_max = 2048)]
//!     upstream: String,
//!     /// How hard to try.
//!     #[schema(default = "fast")]
//!     mode: Mode,
//!     /// Attempts before giving up.
//!     #[schema(between = (1, 10), default = 3)]
//!     attempts: u8,
//! }
//!
//! check_plugin_schema(&plugin_schema("example", Config::schema())).unwrap();
//! ```
//!
//! # Compile-time errors
//!
//! An attribute Kong would refuse on the field's type is a compile error, whatever the type
//! (the check runs in a constant on `<T as Schema>::KIND`; for a hand-written impl that leaves
//! `KIND` at `None`, the same check runs in `schema()`):
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // field of type 'boolean' cannot have attribute 'one_of'
//!     #[schema(one_of = [1, 2])]
//!     verbose: bool,
//! }
//! ```
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // field of type 'array' cannot have attribute 'match'
//!     #[schema(match = "^%a+$")]
//!     names: Vec<String>,
//! }
//! ```
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // a length makes no sense on an integer (Kong's validator would raise a Lua error)
//!     #[schema(len_min = 1)]
//!     retries: u32,
//! }
//! ```
//!
//! So is a literal of the wrong JSON type in `default`, `one_of`, `between` or `gt`:
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // `default` is a string, which does not fit a field of type 'integer'
//!     #[schema(default = "80")]
//!     port: u16,
//! }
//! ```
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // `one_of` value "1" is a string, which does not fit a field of type 'integer'
//!     #[schema(one_of = ["1", "2"])]
//!     level: i32,
//! }
//! ```
//!
//! ```compile_fail,E0080
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // `between` bound 0.5 is a fractional number, which does not fit a field of type 'integer'
//!     #[schema(between = (0.5, 10))]
//!     weight: i64,
//! }
//! ```
//!
//! The derive itself refuses what it can see in the attribute alone:
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // `between` needs min <= max
//!     #[schema(between = (10, 1))]
//!     weight: i64,
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // `len_min` is greater than `len_max`
//!     #[schema(len_min = 5, len_max = 2)]
//!     code: String,
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     /// Short.
//!     // Kong wants descriptions of 10 to 500 bytes
//!     name: String,
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! #[derive(Schema)]
//! struct Config {
//!     // unknown schema attribute `minimum`
//!     #[schema(minimum = 1)]
//!     count: u32,
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! // a Kong string field comes from unit variants only
//! #[derive(Schema)]
//! enum Mode {
//!     Fast,
//!     Custom(String),
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::prelude::*;
//! # #[derive(Deserialize, Schema)] struct Inner { a: String }
//! #[derive(Deserialize, Schema)]
//! struct Config {
//!     // `#[serde(flatten)]` has no Kong equivalent
//!     #[serde(flatten)]
//!     inner: Inner,
//! }
//! ```
//!
//! ```compile_fail
//! # use kong_rust_pdk::Schema;
//! // Kong fields need names
//! #[derive(Schema)]
//! struct Config(String);
//! ```
//!
//! What only exists at run time is checked when [`Schema::schema`] runs (the host runs it when
//! it loads the plugin, so a broken schema is refused there with the message): a `default`
//! that is not a literal or breaks the field's own constraints, a malformed Lua pattern, a
//! hand-written [`Schema`] impl whose definition Kong would refuse or whose `KIND` is `None`.

// The schema machinery lives in `kong-rust-schema`, which the host shares without depending on
// the PDK; this module is its author-facing face (the derive's expansions name these paths).
pub use kong_rust_schema::*;
