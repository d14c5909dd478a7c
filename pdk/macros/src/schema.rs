use kong_rust_schema::DESCRIPTION_BYTES;
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{
    meta::ParseNestedMeta, spanned::Spanned, Attribute, Data, DataEnum, DataStruct, DeriveInput,
    Expr, ExprArray, ExprLit, ExprTuple, ExprUnary, Fields, Lit, LitBool, LitInt, LitStr, Meta,
    Token, Type, UnOp,
};

const ATTRIBUTES: &str = "default, description, required, one_of, between, gt, len_min, \
    len_max, len_eq, match, not_match, starts_with, uuid, referenceable, encrypted";

pub fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let container = Serde::parse(&input.attrs)?;
    let ident = &input.ident;
    let (kind, body, checks) = match &input.data {
        Data::Struct(data) => {
            let (body, checks) = struct_schema(ident.to_string(), data, &container)?;
            (quote!(Record), body, checks)
        }
        Data::Enum(data) => (
            quote!(String),
            enum_schema(ident, data, &container)?,
            Vec::new(),
        ),
        Data::Union(_) => return Err(syn::Error::new_spanned(
            ident,
            "Schema derives for structs (a Kong record) and enums of unit variants (a Kong string)",
        )),
    };
    // The attribute checks are constants: evaluated by the compiler (a generic type's checks
    // are evaluated when it is instantiated).
    let (inline_checks, item_checks) = match (checks.is_empty(), input.generics.params.is_empty()) {
        (true, _) => (quote!(), quote!()),
        (false, true) => (quote!(), quote!(const _: () = { #(#checks;)* };)),
        (false, false) => (quote!(const { #(#checks;)* };), quote!()),
    };
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::kong_rust_pdk::Schema for #ident #ty_generics #where_clause {
            const KIND: ::core::option::Option<::kong_rust_pdk::schema::Kind> =
                ::core::option::Option::Some(::kong_rust_pdk::schema::Kind::#kind);
            fn schema() -> ::kong_rust_pdk::__private::serde_json::Value {
                #inline_checks
                #body
            }
        }
        #item_checks
    })
}

fn struct_schema(
    type_name: String,
    data: &DataStruct,
    container: &Serde,
) -> syn::Result<(TokenStream, Vec<TokenStream>)> {
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &data.fields,
            "Schema needs named fields: each is a Kong field",
        ));
    };
    let mut entries = Vec::new();
    let mut checks = Vec::new();
    for field in &fields.named {
        let serde = Serde::parse(&field.attrs)?;
        if serde.flatten {
            return Err(syn::Error::new_spanned(
                field,
                "`#[serde(flatten)]` has no Kong equivalent: make the nested struct a field (a Kong record)",
            ));
        }
        if serde.skip {
            continue;
        }
        let ident = field.ident.as_ref().expect("named field");
        let rust_name = ident.to_string().trim_start_matches("r#").to_string();
        let name = match (serde.rename, container.rename_all) {
            (Some(name), _) => name,
            (None, Some(rule)) => rule.apply_to_field(&rust_name),
            (None, None) => rust_name.clone(),
        };
        let ty = &field.ty;
        let attributes = FieldAttributes::parse(field, ty, &format!("{type_name}.{rust_name}"))?;
        let required = match attributes.required {
            Some(required) => quote!(#required),
            None if serde.default || container.default => quote!(false),
            None => quote!(<#ty as ::kong_rust_pdk::Schema>::REQUIRED),
        };
        let json = attributes.json;
        entries.push(quote! {
            ::kong_rust_pdk::__private::field::<#ty>(
                #name,
                #required,
                ::kong_rust_pdk::__private::serde_json::json!({ #(#json),* }),
            )
        });
        checks.extend(attributes.checks);
    }
    let body = quote! {
        ::kong_rust_pdk::__private::record(#type_name, ::std::vec![#(#entries),*])
    };
    Ok((body, checks))
}

fn enum_schema(ident: &syn::Ident, data: &DataEnum, container: &Serde) -> syn::Result<TokenStream> {
    if container.tagged {
        return Err(syn::Error::new_spanned(
            ident,
            "an enum with `#[serde(tag/content/untagged)]` is not deserialized from a plain string",
        ));
    }
    let mut names = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                variant,
                "Schema derives a Kong string (`one_of` the variant names) from an enum of unit variants only",
            ));
        }
        let serde = Serde::parse(&variant.attrs)?;
        if serde.skip {
            continue;
        }
        let rust_name = variant
            .ident
            .to_string()
            .trim_start_matches("r#")
            .to_string();
        names.push(match (serde.rename, container.rename_all) {
            (Some(name), _) => name,
            (None, Some(rule)) => rule.apply_to_variant(&rust_name),
            (None, None) => rust_name,
        });
    }
    if names.is_empty() {
        return Err(syn::Error::new_spanned(
            ident,
            "Schema needs at least one variant to deserialize (Kong's `one_of` cannot be empty)",
        ));
    }
    Ok(quote! {
        ::kong_rust_pdk::__private::serde_json::json!({ "type": "string", "one_of": [#(#names),*] })
    })
}

/// What a field's `#[schema(...)]` attributes and doc comments add to its definition.
struct FieldAttributes {
    required: Option<bool>,
    /// `"key": value` entries of the attributes object.
    json: Vec<TokenStream>,
    /// Compile-time checks against `<T as Schema>::KIND`.
    checks: Vec<TokenStream>,
}

impl FieldAttributes {
    fn parse(field: &syn::Field, ty: &Type, context: &str) -> syn::Result<Self> {
        let mut parser = FieldParser {
            ty,
            context,
            parsed: FieldAttributes {
                required: None,
                json: Vec::new(),
                checks: Vec::new(),
            },
            doc: Vec::new(),
            description: None,
            seen: Vec::new(),
            lengths: (None, None),
        };
        for attr in &field.attrs {
            if attr.path().is_ident("doc") {
                parser.doc.extend(doc_line(attr));
            } else if attr.path().is_ident("schema") {
                attr.parse_nested_meta(|meta| parser.attribute(&meta))?;
            }
        }
        parser.finish(field)
    }
}

/// One field's attributes as they are read: each `#[schema(...)]` attribute by its own method,
/// then what depends on several of them ([`FieldParser::finish`]).
struct FieldParser<'a> {
    ty: &'a Type,
    /// `Struct.field`, for the messages.
    context: &'a str,
    parsed: FieldAttributes,
    /// The `///` lines: the description unless `description` is given.
    doc: Vec<String>,
    description: Option<(String, Span)>,
    /// Attributes read so far, to refuse one given twice.
    seen: Vec<String>,
    /// `len_min` and `len_max`, checked against each other at the end.
    lengths: (Option<u64>, Option<u64>),
}

impl FieldParser<'_> {
    fn attribute(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if self.seen.contains(&key) {
            return Err(meta.error(format!("duplicate schema attribute `{key}`")));
        }
        let checker = Checker {
            ty: self.ty,
            context: self.context,
            span: meta.path.span(),
        };
        match key.as_str() {
            "default" => self.default(meta, &checker)?,
            "description" => self.description(meta)?,
            "required" => self.required(meta)?,
            "one_of" => self.one_of(meta, &checker)?,
            "between" => self.between(meta, &checker)?,
            "gt" => self.gt(meta, &checker)?,
            "len_min" | "len_max" | "len_eq" => self.length(&key, meta, &checker)?,
            "match" | "not_match" | "starts_with" => self.text(&key, meta, &checker)?,
            "uuid" | "referenceable" | "encrypted" => self.flag(&key, meta, &checker)?,
            _ => {
                return Err(meta.error(format!(
                    "unknown schema attribute `{key}`; expected one of: {ATTRIBUTES}"
                )))
            }
        }
        self.seen.push(key);
        Ok(())
    }

    fn default(&mut self, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let value = json_value(meta)?;
        if let Some(literal) = value_literal(&value) {
            self.parsed
                .checks
                .push(checker.literal(literal, "`default`"));
        }
        self.parsed.json.push(quote!("default": #value));
        Ok(())
    }

    fn description(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let text: LitStr = meta.value()?.parse()?;
        self.description = Some((text.value(), text.span()));
        Ok(())
    }

    fn required(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        self.parsed.required = Some(meta.value()?.parse::<LitBool>()?.value);
        Ok(())
    }

    fn one_of(&mut self, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let options: ExprArray = meta.value()?.parse()?;
        if options.elems.is_empty() {
            return Err(meta.error("`one_of` needs at least one value"));
        }
        self.parsed.checks.push(checker.attribute("one_of"));
        for option in &options.elems {
            let literal = scalar_literal(option)?.0;
            let what = format!("`one_of` value {}", option.to_token_stream());
            self.parsed.checks.push(checker.literal(literal, &what));
        }
        self.parsed.json.push(quote!("one_of": #options));
        Ok(())
    }

    fn between(&mut self, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let bounds: ExprTuple = meta.value()?.parse()?;
        let elems = &bounds.elems;
        let (Some(min), Some(max), 2) = (elems.first(), elems.get(1), elems.len()) else {
            return Err(meta.error("expected `between = (min, max)`"));
        };
        self.parsed.checks.push(checker.attribute("between"));
        let mut limits = Vec::new();
        for bound in [min, max] {
            let (literal, value) = number_literal(bound)?;
            let what = format!("`between` bound {}", bound.to_token_stream());
            self.parsed.checks.push(checker.literal(literal, &what));
            limits.push(value);
        }
        if limits[0] > limits[1] {
            return Err(syn::Error::new_spanned(
                &bounds,
                "`between = (min, max)` needs min <= max",
            ));
        }
        self.parsed.json.push(quote!("between": [#min, #max]));
        Ok(())
    }

    fn gt(&mut self, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let limit: Expr = meta.value()?.parse()?;
        let literal = number_literal(&limit)?.0;
        let what = format!("`gt` value {}", limit.to_token_stream());
        self.parsed.checks.push(checker.attribute("gt"));
        self.parsed.checks.push(checker.literal(literal, &what));
        self.parsed.json.push(quote!("gt": #limit));
        Ok(())
    }

    /// `len_min`, `len_max`, `len_eq`.
    fn length(&mut self, key: &str, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let length: LitInt = meta.value()?.parse()?;
        let n: u64 = length.base10_parse()?;
        match key {
            "len_min" => self.lengths.0 = Some(n),
            "len_max" => self.lengths.1 = Some(n),
            _ => {}
        }
        self.parsed.checks.push(checker.attribute(key));
        self.parsed.json.push(quote!(#key: #n));
        Ok(())
    }

    /// `match`, `not_match`, `starts_with`: a string argument, passed on as written.
    fn text(&mut self, key: &str, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let text: LitStr = meta.value()?.parse()?;
        self.parsed.checks.push(checker.attribute(key));
        self.parsed.json.push(quote!(#key: #text));
        Ok(())
    }

    /// `uuid`, `referenceable`, `encrypted`: bare or `= bool`; `false` leaves it out.
    fn flag(&mut self, key: &str, meta: &ParseNestedMeta, checker: &Checker) -> syn::Result<()> {
        let on = if meta.input.peek(Token![=]) {
            meta.value()?.parse::<LitBool>()?.value
        } else {
            true
        };
        if on {
            self.parsed.checks.push(checker.attribute(key));
            self.parsed.json.push(quote!(#key: true));
        }
        Ok(())
    }

    /// The rules between attributes (`len_min` <= `len_max`) and the description, from
    /// `description` or else the doc comment.
    fn finish(self, field: &syn::Field) -> syn::Result<FieldAttributes> {
        let FieldParser {
            mut parsed,
            doc,
            description,
            lengths,
            ..
        } = self;
        if let (Some(min), Some(max)) = lengths {
            if min > max {
                return Err(syn::Error::new_spanned(
                    field,
                    format!("`len_min` ({min}) is greater than `len_max` ({max})"),
                ));
            }
        }
        let description = description.or_else(|| {
            let joined = doc.join(" ");
            (!joined.is_empty()).then(|| (joined, field_span(field)))
        });
        if let Some((text, span)) = description {
            if !DESCRIPTION_BYTES.contains(&text.len()) {
                return Err(syn::Error::new(
                    span,
                    format!(
                        "this becomes Kong's `description`, which must be {} to {} bytes long; it is {} bytes",
                        DESCRIPTION_BYTES.start(),
                        DESCRIPTION_BYTES.end(),
                        text.len()
                    ),
                ));
            }
            parsed.json.push(quote!("description": #text));
        }
        Ok(parsed)
    }
}

fn field_span(field: &syn::Field) -> Span {
    field
        .ident
        .as_ref()
        .map_or_else(|| field.span(), syn::Ident::span)
}

/// The trimmed text of a `///` line, if not blank.
fn doc_line(attr: &Attribute) -> Option<String> {
    let Meta::NameValue(nv) = &attr.meta else {
        return None;
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Str(text),
        ..
    }) = &nv.value
    else {
        return None;
    };
    let line = text.value().trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// Emits the compile-time checks of one attribute of one field.
struct Checker<'a> {
    ty: &'a Type,
    /// `Struct.field`, for the messages.
    context: &'a str,
    span: Span,
}

impl Checker<'_> {
    /// The attribute suits the field's Kong type.
    fn attribute(&self, name: &str) -> TokenStream {
        let Checker { ty, context, span } = self;
        quote_spanned! {*span=>
            ::kong_rust_pdk::schema::assert_attribute(
                <#ty as ::kong_rust_pdk::Schema>::KIND, #name, #context,
            )
        }
    }

    /// A literal written in the attribute fits the field's Kong type.
    fn literal(&self, literal: &str, what: &str) -> TokenStream {
        let Checker { ty, context, span } = self;
        let literal = format_ident!("{literal}");
        quote_spanned! {*span=>
            ::kong_rust_pdk::schema::assert_literal(
                <#ty as ::kong_rust_pdk::Schema>::KIND,
                ::kong_rust_pdk::schema::Literal::#literal,
                #what,
                #context,
            )
        }
    }
}

/// The tokens of `= <json>` up to the next `,`: anything `serde_json::json!` takes, including
/// `{"a": 1}`, `[..]`, `null` and Rust expressions.
fn json_value(meta: &ParseNestedMeta) -> syn::Result<TokenStream> {
    let input = meta.value()?;
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    if tokens.is_empty() {
        return Err(meta.error("expected a value after `=`"));
    }
    Ok(tokens)
}

/// The kind of literal a JSON value written in an attribute is, when it is a literal.
fn value_literal(value: &TokenStream) -> Option<&'static str> {
    let mut trees = value.clone().into_iter();
    if let (Some(TokenTree::Group(group)), None) = (trees.next(), trees.next()) {
        match group.delimiter() {
            Delimiter::Bracket => return Some("Array"),
            Delimiter::Brace => return Some("Object"),
            _ => {}
        }
    }
    let expr: Expr = syn::parse2(value.clone()).ok()?;
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(_), ..
        }) => Some("Boolean"),
        _ => scalar_literal(&expr).ok().map(|(literal, _)| literal),
    }
}

/// A string or number literal (possibly negative): its kind, and its value if a number.
fn scalar_literal(expr: &Expr) -> syn::Result<(&'static str, f64)> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(_), ..
        }) => Ok(("String", 0.0)),
        _ => number_literal(expr),
    }
}

fn number_literal(expr: &Expr) -> syn::Result<(&'static str, f64)> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => Ok(("Integer", n.base10_parse()?)),
        Expr::Lit(ExprLit {
            lit: Lit::Float(n), ..
        }) => Ok(("Float", n.base10_parse()?)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => number_literal(expr).map(|(literal, n)| (literal, -n)),
        other => Err(syn::Error::new_spanned(
            other,
            "expected a number literal (or a string literal in `one_of`)",
        )),
    }
}

/// The serde attributes that decide what JSON a type accepts.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<RenameRule>,
    default: bool,
    skip: bool,
    flatten: bool,
    tagged: bool,
}

impl Serde {
    fn parse(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut serde = Serde::default();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
            attr.parse_nested_meta(|meta| {
                let path = &meta.path;
                if path.is_ident("rename") {
                    serde.rename = deserialize_name(&meta)?.map(|name| name.value());
                } else if path.is_ident("rename_all") {
                    serde.rename_all = deserialize_name(&meta)?
                        .map(|rule| RenameRule::parse(&rule))
                        .transpose()?;
                } else if path.is_ident("default") {
                    serde.default = true;
                    skip_value(&meta)?;
                } else if path.is_ident("skip") || path.is_ident("skip_deserializing") {
                    serde.skip = true;
                } else if path.is_ident("flatten") {
                    serde.flatten = true;
                } else if ["tag", "content", "untagged"]
                    .iter()
                    .any(|k| path.is_ident(k))
                {
                    serde.tagged = true;
                    skip_value(&meta)?;
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            })?;
        }
        Ok(serde)
    }
}

/// The name from `rename = "x"` or `rename(deserialize = "x")`.
fn deserialize_name(meta: &ParseNestedMeta) -> syn::Result<Option<LitStr>> {
    if meta.input.peek(Token![=]) {
        return meta.value()?.parse().map(Some);
    }
    let mut name = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("deserialize") {
            name = Some(inner.value()?.parse()?);
        } else {
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    Ok(name)
}

/// Consumes whatever value a serde attribute this derive ignores has.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// serde's `rename_all` rules, applied exactly as serde applies them.
#[derive(Clone, Copy)]
enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    const ALL: [(&'static str, RenameRule); 8] = [
        ("lowercase", RenameRule::Lower),
        ("UPPERCASE", RenameRule::Upper),
        ("PascalCase", RenameRule::Pascal),
        ("camelCase", RenameRule::Camel),
        ("snake_case", RenameRule::Snake),
        ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
        ("kebab-case", RenameRule::Kebab),
        ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
    ];

    fn parse(rule: &LitStr) -> syn::Result<Self> {
        let name = rule.value();
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, rule)| *rule)
            .ok_or_else(|| syn::Error::new_spanned(rule, format!("unknown rename rule `{name}`")))
    }

    /// A variant name (PascalCase in Rust) under this rule.
    fn apply_to_variant(self, variant: &str) -> String {
        match self {
            RenameRule::Pascal => variant.to_string(),
            RenameRule::Lower => variant.to_ascii_lowercase(),
            RenameRule::Upper => variant.to_ascii_uppercase(),
            RenameRule::Camel => lower_first(variant),
            RenameRule::Snake => {
                let mut snake = String::new();
                for (i, c) in variant.char_indices() {
                    if i > 0 && c.is_uppercase() {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                }
                snake
            }
            RenameRule::ScreamingSnake => RenameRule::Snake
                .apply_to_variant(variant)
                .to_ascii_uppercase(),
            RenameRule::Kebab => RenameRule::Snake
                .apply_to_variant(variant)
                .replace('_', "-"),
            RenameRule::ScreamingKebab => RenameRule::ScreamingSnake
                .apply_to_variant(variant)
                .replace('_', "-"),
        }
    }

    /// A field name (snake_case in Rust) under this rule.
    fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_string(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for c in field.chars() {
                    if c == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(c.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(c);
                    }
                }
                pascal
            }
            RenameRule::Camel => lower_first(&RenameRule::Pascal.apply_to_field(field)),
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}
