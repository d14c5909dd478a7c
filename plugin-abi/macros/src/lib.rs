//! Procedural macros of `kong-rust-pdk`. Use them through that crate.

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

/// Derives `kong_rust_pdk::Schema` for a config struct: a Kong `record` with one field per
/// struct field. Doc comments become `description`s; `#[schema(default = <value>)]` sets a
/// default (any `serde_json::json!` value).
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(item: TokenStream) -> TokenStream {
    schema::expand(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
