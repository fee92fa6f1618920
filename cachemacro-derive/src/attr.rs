//! Parsing the attribute's options: `#[memoize(timeout = 50, ignore = [db])]`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{bracketed, Expr, Ident, LitInt, LitStr, Path, Token};

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Memoize,
    Cached,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Memoize => "memoize",
            Kind::Cached => "cached",
        }
    }

    fn valid(self) -> &'static [&'static str] {
        match self {
            Kind::Memoize => &[
                "timeout",
                "cache",
                "unless",
                "forced_update",
                "response_filter",
                "cache_none",
                "ignore",
                "make_name",
                "source_check",
                "crate",
            ],
            Kind::Cached => &[
                "timeout",
                "cache",
                "unless",
                "forced_update",
                "response_filter",
                "cache_none",
                "key_prefix",
                "key",
                "crate",
            ],
        }
    }
}

/// One option's value, remembering where it was written; set at most once.
pub(crate) struct Slot<T> {
    name: &'static str,
    pub(crate) value: Option<(Span, T)>,
}

impl<T> Slot<T> {
    fn new(name: &'static str) -> Self {
        Slot { name, value: None }
    }

    fn set(&mut self, span: Span, value: T, errors: &mut Vec<syn::Error>) {
        if self.value.is_some() {
            errors.push(syn::Error::new(
                span,
                format!("option `{}` is given twice", self.name),
            ));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }
}

/// `timeout = 50` (seconds) or `timeout = <Duration expression>`.
pub(crate) enum TimeoutOpt {
    Secs(LitInt),
    Expr(Expr),
}

/// Every option, parsed but not yet checked against the function.
pub(crate) struct Options {
    pub(crate) kind: Kind,
    pub(crate) timeout: Slot<TimeoutOpt>,
    pub(crate) cache: Slot<Expr>,
    pub(crate) unless: Slot<Expr>,
    pub(crate) forced_update: Slot<Expr>,
    pub(crate) response_filter: Slot<Expr>,
    pub(crate) cache_none: Slot<bool>,
    pub(crate) ignore: Slot<Vec<Ident>>,
    pub(crate) make_name: Slot<Expr>,
    pub(crate) source_check: Slot<bool>,
    pub(crate) key_prefix: Slot<LitStr>,
    pub(crate) key: Slot<Expr>,
    pub(crate) krate: Slot<Path>,
}

impl Options {
    fn new(kind: Kind) -> Self {
        Options {
            kind,
            timeout: Slot::new("timeout"),
            cache: Slot::new("cache"),
            unless: Slot::new("unless"),
            forced_update: Slot::new("forced_update"),
            response_filter: Slot::new("response_filter"),
            cache_none: Slot::new("cache_none"),
            ignore: Slot::new("ignore"),
            make_name: Slot::new("make_name"),
            source_check: Slot::new("source_check"),
            key_prefix: Slot::new("key_prefix"),
            key: Slot::new("key"),
            krate: Slot::new("crate"),
        }
    }

    /// Parses `args`; every problem found is in `errors`, and parsing goes on past it.
    pub(crate) fn parse(kind: Kind, args: TokenStream, errors: &mut Vec<syn::Error>) -> Options {
        let mut opts = Options::new(kind);
        let parser = syn::meta::parser(|meta| {
            if let Err(e) = opts.option(&meta, errors) {
                errors.push(e);
                // Skip what is left of this option, so that the next one is still read and
                // one mistake is one error.
                while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                    meta.input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            Ok(())
        });
        if let Err(e) = parser.parse2(args) {
            errors.push(e);
        }
        opts
    }

    fn option(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        errors: &mut Vec<syn::Error>,
    ) -> syn::Result<()> {
        let span = meta
            .path
            .get_ident()
            .map_or_else(Span::call_site, Ident::span);
        let name = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !self.kind.valid().contains(&name.as_str()) {
            return Err(meta.error(format!(
                "unknown option `{}` for #[{}]; valid options are: {}",
                quote::ToTokens::to_token_stream(&meta.path)
                    .to_string()
                    .replace(' ', ""),
                self.kind.name(),
                self.kind.valid().join(", ")
            )));
        }
        match name.as_str() {
            "timeout" => {
                let value = match meta.value()?.parse::<Expr>()? {
                    Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(i), .. }) => {
                        i.base10_parse::<u64>()?;
                        TimeoutOpt::Secs(i)
                    }
                    Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
                        return Err(syn::Error::new_spanned(
                            u,
                            "timeout must be a number of seconds >= 0 (0 = never expires) or a Duration",
                        ))
                    }
                    e => TimeoutOpt::Expr(e),
                };
                self.timeout.set(span, value, errors);
            }
            "cache" => self.cache.set(span, meta.value()?.parse()?, errors),
            "unless" => self.unless.set(span, meta.value()?.parse()?, errors),
            "forced_update" => self.forced_update.set(span, meta.value()?.parse()?, errors),
            "response_filter" => self
                .response_filter
                .set(span, meta.value()?.parse()?, errors),
            "make_name" => self.make_name.set(span, meta.value()?.parse()?, errors),
            "key" => self.key.set(span, meta.value()?.parse()?, errors),
            "cache_none" => self.cache_none.set(span, flag(meta, "cache_none")?, errors),
            "source_check" => self
                .source_check
                .set(span, flag(meta, "source_check")?, errors),
            "key_prefix" => self.key_prefix.set(span, meta.value()?.parse()?, errors),
            "crate" => {
                let lit: LitStr = meta.value()?.parse()?;
                self.krate.set(span, lit.parse()?, errors);
            }
            "ignore" => {
                let input = meta.value()?;
                let content;
                bracketed!(content in input);
                let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                    &content,
                    syn::ext::IdentExt::parse_any,
                )?;
                self.ignore.set(span, names.into_iter().collect(), errors);
            }
            _ => unreachable!("checked against the valid names above"),
        }
        Ok(())
    }
}

/// The value of a `true`/`false` option.
fn flag(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<bool> {
    match meta.value()?.parse::<Expr>()? {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(b),
            ..
        }) => Ok(b.value),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{name}` is `true` or `false`"),
        )),
    }
}
