//! The `#[memoize]` and `#[cached]` attributes of [cachemacro](https://docs.rs/cachemacro).
//!
//! Use them through the `cachemacro` crate, which documents them; generated code names only
//! `::cachemacro::__private` items.
//!
//! The crate is split one step per file: `attr` parses the options, `model` reads the
//! function, `check` matches the two, `expand` writes the code. Every error found on the way
//! is reported at once, pointing at the tokens at fault, and the function is still emitted
//! as written so that one mistake does not cascade into unrelated ones.
#![warn(missing_docs, unreachable_pub)]

mod attr;
mod check;
mod expand;
mod model;

use proc_macro::TokenStream;
use quote::ToTokens;

use attr::{Kind, Options};

/// Caches a function's results by its identity and every argument (Flask's
/// `@cache.memoize`). See the `cachemacro` crate for the options and generated helpers.
#[proc_macro_attribute]
pub fn memoize(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Kind::Memoize, args.into(), item.into()).into()
}

/// Caches a function's result under one key (Flask's `@cache.cached`). See the `cachemacro`
/// crate for the options and generated helpers.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Kind::Cached, args.into(), item.into()).into()
}

fn run(
    kind: Kind,
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("#[{}] applies to functions and methods: {e}", kind.name());
            let err = syn::Error::new(e.span(), msg).to_compile_error();
            return quote::quote!(#item #err);
        }
    };
    let mut errors = Vec::new();
    let opts = Options::parse(kind, args, &mut errors);
    let model = model::Func::new(func.clone(), &mut errors);
    check::check(&opts, &model, &mut errors);
    match errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        None => expand::expand(&opts, &model),
        Some(err) => {
            let mut out = func.into_token_stream();
            out.extend(err.to_compile_error());
            out
        }
    }
}
