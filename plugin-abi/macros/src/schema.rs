use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Expr, ExprLit, Fields, Lit, Meta};

/// Kong rejects descriptions outside 10–500 characters (spec §4.4): catch it at compile time.
const DESCRIPTION_LEN: std::ops::RangeInclusive<usize> = 10..=500;

pub fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Schema derives only for structs (a Kong record)",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "Schema needs named fields: each is a Kong field",
        ));
    };

    let mut entries = Vec::new();
    for field in &fields.named {
        let ident = field.ident.as_ref().expect("named field");
        let name = ident.to_string().trim_start_matches("r#").to_string();
        let ty = &field.ty;
        let mut default = quote!(None);
        let mut doc = Vec::new();
        for attr in &field.attrs {
            if attr.path().is_ident("doc") {
                if let Meta::NameValue(nv) = &attr.meta {
                    if let Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) = &nv.value
                    {
                        doc.push(s.value().trim().to_string());
                    }
                }
            } else if attr.path().is_ident("schema") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("default") {
                        let value: TokenStream =
                            meta.value()?.parse::<Expr>().map(|e| quote!(#e))?;
                        default =
                            quote!(Some(::kong_rust_pdk::__private::serde_json::json!(#value)));
                        Ok(())
                    } else {
                        Err(meta.error("expected `default = <value>`"))
                    }
                })?;
            }
        }
        let description = doc.join(" ").trim().to_string();
        let description = if description.is_empty() {
            quote!(None)
        } else if !DESCRIPTION_LEN.contains(&description.chars().count()) {
            return Err(syn::Error::new_spanned(
                ident,
                format!(
                    "the doc comment becomes Kong's `description`, which must be 10 to 500 characters; this one has {}",
                    description.chars().count()
                ),
            ));
        } else {
            quote!(Some(#description))
        };
        entries.push(quote! {
            ::kong_rust_pdk::__private::field::<#ty>(#name, #default, #description)
        });
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::kong_rust_pdk::Schema for #ident #ty_generics #where_clause {
            fn schema() -> ::kong_rust_pdk::__private::serde_json::Value {
                ::kong_rust_pdk::__private::record(vec![#(#entries),*])
            }
        }
    })
}
