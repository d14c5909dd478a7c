//! Procedural macros of `kong-rust-pdk`. Use them through that crate.

#![warn(missing_docs)]

mod plugin;
mod schema;

use proc_macro::TokenStream;

/// Exports an `impl Plugin for T` block as a Kong plugin.
///
/// `#[plugin(name = "my-plugin", priority = 1000)]`, optionally `version = "x.y.z"` (default: the
/// crate's version). The phases advertised to Kong are exactly the phase methods the block
/// defines.
#[proc_macro_attribute]
pub fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    plugin::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `kong_rust_pdk::Schema`: the Kong field definition of a config type.
///
/// * A struct with named fields is a Kong `record` with one field per struct field, each
///   defined by the `Schema` impl of its type: `String` → string, `bool` → boolean, integers
///   → integer with `between` the range the type (and a Lua double) holds, `f32`/`f64` →
///   number, `Vec<T>` → array, `HashSet<T>`/`BTreeSet<T>` → set, `HashMap<String, T>`/
///   `BTreeMap<String, T>` → map, a struct deriving `Schema` → record, an enum deriving it →
///   string. A field is `required` unless its type is `Option<T>`, it has `#[serde(default)]`
///   (or the struct has), or `#[schema(required = false)]`.
/// * An enum of unit variants is a Kong `string` with `one_of` the variant names.
///
/// Names follow serde, so the schema and deserialization agree: `#[serde(rename = "..")]` on
/// fields and variants, `#[serde(rename_all = "..")]` on the type (all of serde's rules);
/// `#[serde(skip)]`/`skip_deserializing` leave a field or variant out. `#[serde(flatten)]`
/// and tagged enums are refused.
///
/// A field's doc comment becomes its `description` (blank lines dropped, lines joined).
///
/// # Field attributes
///
/// | attribute | Kong attribute | allowed on |
/// |---|---|---|
/// | `default = <json>` (`"x"`, `5`, `[..]`, `{..}`, `null`, any Rust expression) | `default` | all |
/// | `description = ".."` (replaces the doc comment) | `description` | all |
/// | `required = false` / `required = true` | `required` | all |
/// | `one_of = ["a", "b"]` / `one_of = [1, 2]` | `one_of` | string, number, integer |
/// | `between = (0, 100)` (replaces an integer type's own range) | `between` | number, integer |
/// | `gt = 0` | `gt` | number, integer |
/// | `len_min = 1`, `len_max = 64`, `len_eq = 2` | `len_min`, `len_max`, `len_eq` | string, array, set, map |
/// | `match = "^%w+$"`, `not_match = "%s"` (Lua patterns) | `match`, `not_match` | string |
/// | `starts_with = "/"` | `starts_with` | string |
/// | `uuid` | `uuid = true` | string |
/// | `referenceable` (may hold a `{vault://..}` reference) | `referenceable = true` | string |
/// | `encrypted` (Kong Enterprise keyring) | `encrypted = true` | string, array |
///
/// Flags (`uuid`, `referenceable`, `encrypted`) also take `= true`/`= false`.
///
/// ```ignore
/// #[derive(Deserialize, Schema)]
/// #[serde(rename_all = "kebab-case")]
/// enum Mode { Fast, Thorough }            // {"type": "string", "one_of": ["fast", "thorough"]}
///
/// #[derive(Deserialize, Schema)]
/// struct Config {
///     /// Where requests are forwarded to.
///     #[schema(match = "^https?://", len_max = 2048)]
///     upstream: String,
///     /// How hard to try.
///     #[schema(default = "fast")]
///     mode: Mode,
///     #[schema(between = (1, 10), default = 3)]
///     attempts: u8,
///     #[schema(referenceable, encrypted)]
///     api_key: Option<String>,
/// }
/// ```
///
/// # Errors
///
/// At compile time (the `kong_rust_pdk::schema` module documentation has each case as a
/// compile-fail test):
/// * an attribute on a field whose Kong type cannot have it, whatever the Rust type (checked
///   on `<T as Schema>::KIND` in a constant): "`Config.verbose`: field of type 'boolean'
///   cannot have attribute 'one_of' (it applies to string, number, integer fields)". A
///   generic struct's checks run when it is instantiated; a field whose type's hand-written
///   impl leaves `KIND` at `None` is checked when `schema()` runs instead;
/// * a literal of the wrong type in `default`, `one_of`, `between` or `gt`: "`Config.port`:
///   `default` is a string, which does not fit a field of type 'integer'";
/// * `between` with min > max, `len_min` > `len_max`, an empty `one_of`, a description
///   outside Kong's 10 to 500 bytes, an unknown or repeated attribute, a tuple struct, an
///   enum with data, `#[serde(flatten)]`.
///
/// When `Schema::schema()` runs (the host runs it when it loads the plugin and refuses the
/// plugin with the message): a non-literal `default` of the wrong type, a `default` that
/// breaks the field's own constraints (Kong validates defaults too), a malformed Lua pattern.
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(item: TokenStream) -> TokenStream {
    schema::expand(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
