use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{
    parse::Parser, punctuated::Punctuated, Expr, ExprLit, ImplItem, ItemImpl, Lit, MetaNameValue,
    Token,
};

const PHASES: [(&str, &str); 6] = [
    ("certificate", "Certificate"),
    ("rewrite", "Rewrite"),
    ("access", "Access"),
    ("response", "Response"),
    ("preread", "Preread"),
    ("log", "Log"),
];

struct Args {
    name: String,
    version: Option<String>,
    priority: Expr,
}

fn parse_args(args: TokenStream) -> syn::Result<Args> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let (mut name, mut version, mut priority) = (None, None, None);
    for pair in pairs {
        let key = pair
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "name" => name = Some(string_literal(&pair.value)?),
            "version" => version = Some(string_literal(&pair.value)?),
            "priority" => priority = Some(pair.value),
            _ => {
                return Err(syn::Error::new_spanned(
                    pair.path,
                    "expected `name`, `version` or `priority`",
                ))
            }
        }
    }
    let missing =
        |what| syn::Error::new(Span::call_site(), format!("#[plugin] needs `{what} = …`"));
    Ok(Args {
        name: name.ok_or_else(|| missing("name"))?,
        version,
        priority: priority.ok_or_else(|| missing("priority"))?,
    })
}

fn string_literal(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        other => Err(syn::Error::new_spanned(other, "expected a string literal")),
    }
}

/// Kong accepts at most three numeric components (protocol.md §4.3); insist on exactly `x.y.z`.
fn is_semver_triple(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = parse_args(args)?;
    let block: ItemImpl = syn::parse2(item)?;
    if block.trait_.is_none() {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "#[plugin] goes on an `impl Plugin for YourType` block",
        ));
    }
    if args.name.is_empty()
        || !args
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "plugin name must be non-empty lower-case ASCII letters, digits, `-` or `_` (Kong lower-cases names and uses them in file names)",
        ));
    }
    let version = match &args.version {
        Some(version) if !is_semver_triple(version) => {
            return Err(syn::Error::new(
                Span::call_site(),
                format!("version {version:?} is not x.y.z, which Kong requires"),
            ))
        }
        Some(version) => quote!(#version),
        None => quote!(env!("CARGO_PKG_VERSION")),
    };

    let defined: Vec<String> = block
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    let phases = PHASES
        .iter()
        .filter(|(method, _)| defined.iter().any(|d| d == method))
        .map(|(_, variant)| syn::Ident::new(variant, Span::call_site()));

    let self_ty = &block.self_ty;
    let name = &args.name;
    let priority = &args.priority;
    let header = syn::Ident::new(
        &abi_stable_shared::mangled_root_module_loader_name(),
        Span::call_site(),
    );
    let private = quote!(::kong_rust_pdk::__private);

    Ok(quote! {
        #block

        impl #private::Exported for #self_ty {
            const NAME: &'static str = #name;
            const VERSION: &'static str = #version;
            const PRIORITY: i64 = #priority;
            const PHASES: &'static [#private::abi::Phase] = &[#(#private::abi::Phase::#phases),*];
        }

        ::kong_rust_pdk::__export_library_header!(#header, #self_ty);
    })
}

#[cfg(test)]
mod tests {
    use super::is_semver_triple;

    #[test]
    fn versions_must_be_three_numbers() {
        assert!(is_semver_triple("0.1.0"));
        assert!(!is_semver_triple("0.1"));
        assert!(!is_semver_triple("1.2.3.4"));
        assert!(!is_semver_triple("1.2.x"));
    }
}
