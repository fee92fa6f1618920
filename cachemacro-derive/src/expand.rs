//! Code generation: the wrapper that consults the cache, the function that holds the body,
//! and the helper functions.
//!
//! For `#[memoize] fn f(a: A) -> R { body }` in a module:
//!
//! ```text
//! fn f(a: A) -> R { /* key, then run_sync(…, move || __cm_body_f(a)) */ }
//! fn f_delete_memoized(a: A) -> Result<(), Error> { … }    // and the other helpers
//! fn f_uncached(a: A) -> R { __cm_body_f(a) }
//! fn __cm_body_f(a: A) -> R { body }                        // the body, once
//! ```
//!
//! In an `impl` the calls are `Self::__cm_body_f(self, a)`. Where the placement is unknown (see
//! `place.rs`), neither spelling can be chosen: the wrapper then runs the body in a closure
//! of its own and `f_uncached` holds a second copy.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, LitInt, Pat};

use crate::attr::{Kind, Options, TimeoutOpt};
use crate::model::{Func, Ret};
use crate::place::Placement;

struct Ctx<'a> {
    opts: &'a Options,
    func: &'a Func,
    place: Placement,
    /// `::cachemacro::__private` (or the `crate = "…"` root's).
    p: TokenStream,
}

/// `::cachemacro::__private`, or the `__private` of the `crate = "…"` root.
pub(crate) fn private_path(opts: &Options) -> TokenStream {
    let root = opts
        .krate
        .get()
        .map_or_else(|| quote!(::cachemacro), |path| quote!(#path));
    quote!(#root::__private)
}

pub(crate) fn expand(opts: &Options, func: &Func, place: Placement) -> TokenStream {
    let cx = Ctx {
        opts,
        func,
        place,
        p: private_path(opts),
    };
    let wrapper = cx.wrapper();
    let helpers = match opts.kind {
        Kind::Memoize => cx.memoize_helpers(),
        Kind::Cached => cx.cached_helpers(),
    };
    let body = cx.body_fns();
    quote! {
        #wrapper
        #helpers
        #body
    }
}

/// The attributes that set lint levels.
pub(crate) fn is_lint_attr(attr: &Attribute) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|name| attr.path().is_ident(name))
}

/// The `#[cfg]`s of the function, which every generated function repeats.
pub(crate) fn cfgs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

impl Ctx<'_> {
    fn name(&self, suffix: &str) -> Ident {
        let name = self.func.name();
        format_ident!("{}_{}", name, suffix, span = name.span())
    }

    /// The private function that holds the body when the placement is known.
    fn inner_name(&self) -> Ident {
        let name = self.func.name();
        format_ident!("__cm_body_{}", name, span = name.span())
    }

    fn knows_place(&self) -> bool {
        self.place != Placement::Unknown
    }

    /// A call of the function holding the body, passing every argument on.
    fn call_inner(&self) -> TokenStream {
        let inner = self.inner_name();
        let path = match self.place {
            Placement::Assoc => quote!(Self::#inner),
            Placement::Free | Placement::Unknown => quote!(#inner),
        };
        let turbofish = self.func.turbofish();
        let args = self.func.pass_args();
        let call = quote!(#path #turbofish (#args));
        if self.func.item.sig.unsafety.is_some() {
            quote!(unsafe { #call })
        } else {
            call
        }
    }

    /// The type that is stored, and the `Shape` that maps the return type to it (named with
    /// `p`).
    fn shape(&self, p: &TokenStream) -> (TokenStream, TokenStream) {
        let ret = &self.func.ret_ty;
        let cache_none = self.opts.cache_none.get().copied().unwrap_or(false);
        match &self.func.ret {
            Ret::OkOnly(t) => (quote!(#t), quote!(#p::OkOnly<#t, _>)),
            Ret::SomeOnly(t) if !cache_none => (quote!(#t), quote!(#p::SomeOnly<#t>)),
            _ => (quote!(#ret), quote!(#p::Plain<#ret>)),
        }
    }

    fn cache_ref(&self) -> TokenStream {
        let p = &self.p;
        match self.opts.cache.get() {
            Some(e) => quote_spanned!(e.span()=> &*(#e)),
            None => quote!(#p::cache()),
        }
    }

    fn timeout(&self) -> TokenStream {
        let p = &self.p;
        match self.opts.timeout.get() {
            None => quote!(#p::Timeout::Default),
            Some(TimeoutOpt::Secs(lit)) => {
                let secs = lit.base10_parse::<u64>().unwrap_or(0);
                let secs = LitInt::new(&format!("{secs}u64"), lit.span());
                quote!(#p::Timeout::from(#secs))
            }
            Some(TimeoutOpt::Expr(e)) => quote_spanned!(e.span()=> #p::Timeout::from(#e)),
        }
    }

    fn flag(&self, e: Option<&syn::Expr>) -> TokenStream {
        match e {
            Some(e) => quote_spanned!(e.span()=> #e),
            None => quote!(false),
        }
    }

    /// The arguments that generated code reads (the key, the options' expressions): unused in
    /// the body, they are still used.
    fn read_args(&self) -> HashSet<String> {
        let mut read = HashSet::new();
        let opts = self.opts;
        let exprs = [
            opts.unless.get(),
            opts.forced_update.get(),
            opts.cache.get(),
            opts.key.get(),
            match opts.timeout.get() {
                Some(TimeoutOpt::Expr(e)) => Some(e),
                _ => None,
            },
        ];
        for e in exprs.into_iter().flatten() {
            idents(e.to_token_stream(), &mut read);
        }
        if opts.kind == Kind::Memoize {
            let ignored = opts.ignore.get();
            for arg in &self.func.args {
                if !ignored.is_some_and(|names| names.contains(&arg.name)) {
                    read.insert(arg.name.to_string());
                }
            }
        }
        read
    }

    /// The user's signature, renamed, with `#[allow(unused_variables)]` on each argument that
    /// only generated code reads: the lint is silenced for that argument alone, never for
    /// the body.
    fn body_sig(&self, name: Ident) -> syn::Signature {
        let read = self.read_args();
        let mut sig = self.func.item.sig.clone();
        sig.ident = name;
        for input in &mut sig.inputs {
            if let FnArg::Typed(t) = input {
                if let Pat::Ident(p) = &*t.pat {
                    if read.contains(&p.ident.to_string()) {
                        t.attrs.push(syn::parse_quote!(#[allow(unused_variables)]));
                    }
                }
            }
        }
        sig
    }

    /// The identity of the function, as seen from any function generated for it.
    fn site(&self) -> TokenStream {
        let p = &self.p;
        let method = self.func.name().to_string();
        let source = if self.opts.source_check.get().copied().unwrap_or(false) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.func
                .item
                .block
                .to_token_stream()
                .to_string()
                .hash(&mut h);
            let v = h.finish();
            quote!(::core::option::Option::Some(#v))
        } else {
            quote!(::core::option::Option::None)
        };
        let make_name = match self.opts.make_name.get() {
            Some(e) => quote_spanned!(e.span()=>
                ::core::option::Option::Some(#e as fn(&str) -> ::std::string::String)),
            None => quote!(::core::option::Option::None),
        };
        let self_ty = if self.func.receiver.is_some() {
            quote!(::core::option::Option::Some(
                ::core::any::type_name::<Self>()
            ))
        } else {
            quote!(::core::option::Option::None)
        };
        let generics = &self.func.type_params;
        quote! {
            static __CM_SITE: #p::Site = #p::Site::new(#method, #source, #make_name);
            let __cm_id = __CM_SITE.identity(
                // Names this instantiation, `Self`'s generic arguments included.
                ::core::any::type_name_of_val(&|| {}),
                #self_ty,
                &[#(::core::any::type_name::<#generics>()),*],
            );
        }
    }

    /// Statements feeding every key argument into `__cm_h`.
    fn hash_args(&self) -> TokenStream {
        let ignored = |name: &str| {
            self.opts
                .ignore
                .get()
                .is_some_and(|names| names.iter().any(|n| n == name))
        };
        let mut out = TokenStream::new();
        if let Some(span) = self.func.receiver {
            if !ignored("self") {
                out.extend(quote_spanned!(span=> ::core::hash::Hash::hash(&self, __cm_h);));
            }
        }
        for arg in &self.func.args {
            if !ignored(&arg.name.to_string()) {
                let (name, ty) = (&arg.name, &arg.ty);
                out.extend(quote_spanned!(ty.span()=> ::core::hash::Hash::hash(&#name, __cm_h);));
            }
        }
        for c in &self.func.const_params {
            out.extend(quote!(::core::hash::Hash::hash(&#c, __cm_h);));
        }
        out
    }

    /// Statements binding `__cm_key`, the call's `Key`.
    fn key(&self) -> TokenStream {
        let p = &self.p;
        let hash = self.hash_args();
        match (
            self.opts.kind,
            self.opts.key_prefix.get(),
            self.opts.key.get(),
        ) {
            (Kind::Memoize, ..) => {
                let site = self.site();
                quote! {
                    #site
                    let __cm_key = #p::Key::Memo(__cm_id.call(|__cm_h| { #hash }));
                }
            }
            (Kind::Cached, Some(lit), _) => quote! {
                let __cm_key = #p::Key::Text(::std::borrow::Cow::Borrowed(#lit));
            },
            (Kind::Cached, None, Some(e)) => quote_spanned! {e.span()=>
                let __cm_key = #p::Key::Text(::std::borrow::Cow::Owned(
                    ::core::convert::Into::<::std::string::String>::into(#e),
                ));
            },
            (Kind::Cached, None, None) => {
                let site = self.site();
                quote! {
                    #site
                    let __cm_key = #p::Key::Text(::std::borrow::Cow::Owned(
                        ::std::string::ToString::to_string(&__cm_id.call(|_| {})),
                    ));
                }
            }
        }
    }

    /// The user's attributes for the wrapper. When the body lives elsewhere, an `#[expect]`
    /// becomes an `#[allow]`: the expected lint fires in the body's function, which has the
    /// `#[expect]` itself, and would leave the wrapper's unfulfilled.
    fn wrapper_attrs(&self) -> Vec<Attribute> {
        let mut attrs = self.func.item.attrs.clone();
        if self.knows_place() {
            for attr in &mut attrs {
                if attr.path().is_ident("expect") {
                    if let syn::Meta::List(list) = &mut attr.meta {
                        list.path = syn::parse_quote!(allow);
                    }
                }
            }
        }
        attrs
    }

    fn wrapper(&self) -> TokenStream {
        let p = &self.p;
        let item = &self.func.item;
        let attrs = self.wrapper_attrs();
        let vis = &item.vis;
        let ret = &self.func.ret_ty;
        let (stored, _) = self.shape(p);
        // A return type that cannot be cached fails one bound, `Stored: Cacheable`, in the
        // assertion below and in every expression that uses the shape. The compiler reports
        // an unmet bound once per span, so all of them are spanned alike, on the stored type
        // (its first token: on stable Rust a macro cannot make a span that covers several),
        // and the assertion comes first so that its error is the one shown.
        let at = first_span(&stored);
        let p_at = respan(p.clone(), at);
        let (_, shape) = self.shape(&p_at);
        let shape = respan(shape, at);
        let stored_at = respan(stored.clone(), at);
        let assertion = quote_spanned!(at=> #p_at::assert_cacheable::<#stored_at>(););
        let cache = self.cache_ref();
        let timeout = self.timeout();
        let unless = self.flag(self.opts.unless.get());
        let forced = self.flag(self.opts.forced_update.get());
        let filter = match self.opts.response_filter.get() {
            Some(e) => {
                let cast = quote_spanned!(e.span()=> #e as fn(&#stored) -> bool);
                quote_spanned!(at=> ::core::option::Option::Some(#cast))
            }
            None => quote_spanned!(at=> ::core::option::Option::None),
        };
        let key = self.key();
        let spec = quote_spanned! {at=>
            #p_at::Spec::<#shape> {
                timeout: #timeout,
                forced_update: __cm_forced,
                response_filter: #filter,
            }
        };
        let (sig, body) = if self.knows_place() {
            let call = respan(self.call_inner(), at);
            let body = if self.func.is_async() {
                quote_spanned! {at=>
                    // The body's future: nothing runs until it is awaited.
                    let __cm_body = #call;
                    match __cm_call {
                        ::core::option::Option::None => __cm_body.await,
                        ::core::option::Option::Some(__cm_key) => {
                            #p_at::run_async::<#shape, _>(__cm_cache, __cm_key, #spec, __cm_body)
                                .await
                        }
                    }
                }
            } else {
                // `call` runs the closure whether passing `&mut self` on made it `FnMut` or
                // not, without a `let mut` that would be unused for the others.
                quote_spanned! {at=>
                    let __cm_body = move || #call;
                    match __cm_call {
                        ::core::option::Option::None => #p_at::call(__cm_body),
                        ::core::option::Option::Some(__cm_key) => {
                            #p_at::run_sync::<#shape>(__cm_cache, __cm_key, &#spec, __cm_body)
                        }
                    }
                }
            };
            // The arguments are only passed on: the user's `mut` belongs to the body's
            // function, and would be unused here.
            (self.func.sig_without_mut(), body)
        } else {
            let block = &item.block;
            let body = if self.func.is_async() {
                quote_spanned! {at=>
                    let __cm_body = async move {
                        // An async block's output type cannot be written, and the body's
                        // `return x` and `?` need it to infer `x` and convert errors. This
                        // never-taken `return` of a value of the declared return type fixes
                        // it: `loop {}` has every type and moves nothing.
                        #[allow(
                            unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                            clippy::empty_loop, clippy::let_unit_value, clippy::unreachable
                        )]
                        if false {
                            let __cm_ret: #ret = loop {};
                            return __cm_ret;
                        }
                        #block
                    };
                    match __cm_call {
                        ::core::option::Option::None => __cm_body.await,
                        ::core::option::Option::Some(__cm_key) => {
                            #p_at::run_async::<#shape, _>(__cm_cache, __cm_key, #spec, __cm_body)
                                .await
                        }
                    }
                }
            } else {
                // The closure's return type gives the body's `return` and `?` their meaning;
                // `call` runs it whether the body made it `FnMut` or not.
                quote_spanned! {at=>
                    let __cm_body = move || -> #ret #block;
                    match __cm_call {
                        ::core::option::Option::None => #p_at::call(__cm_body),
                        ::core::option::Option::Some(__cm_key) => {
                            #p_at::run_sync::<#shape>(__cm_cache, __cm_key, &#spec, __cm_body)
                        }
                    }
                }
            };
            (item.sig.clone(), body)
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #assertion
                let __cm_cache: &#p::Cache = #cache;
                let __cm_forced: bool = #forced;
                let __cm_call = if #unless {
                    ::core::option::Option::None
                } else {
                    #key
                    ::core::option::Option::Some(__cm_key)
                };
                #body
            }
        }
    }

    /// `fn f_suffix(<&self,> args) -> R` for a helper that only needs the arguments.
    fn helper_sig(&self, suffix: &str, with_args: bool, ret: TokenStream) -> TokenStream {
        let sig = &self.func.item.sig;
        let name = self.name(suffix);
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let asyncness = &sig.asyncness;
        let recv = (with_args && self.func.receiver.is_some()).then(|| quote!(&self,));
        let args = self.func.args.iter().filter(|_| with_args).map(|a| {
            let (n, t) = (&a.name, &a.ty);
            quote!(#n: #t)
        });
        quote!(#asyncness fn #name #generics (#recv #(#args),*) -> #ret #where_clause)
    }

    fn helper(&self, doc: String, sig: TokenStream, body: TokenStream) -> TokenStream {
        let p = &self.p;
        let vis = &self.func.item.vis;
        let cfgs = cfgs(&self.func.item.attrs);
        let cache = self.cache_ref();
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #[allow(dead_code, unused_variables, clippy::unused_async)]
            #vis #sig {
                let __cm_cache: &#p::Cache = #cache;
                #body
            }
        }
    }

    fn call(&self, sync: TokenStream, asynk: TokenStream) -> TokenStream {
        if self.func.is_async() {
            quote!(#asynk.await)
        } else {
            sync
        }
    }

    fn memoize_helpers(&self) -> TokenStream {
        let p = &self.p;
        let f = self.func.name().to_string();
        let key = self.key();
        let site = self.site();
        let err = quote!(::core::result::Result<(), #p::Error>);
        let delete = self.helper(
            format!("Drops the memoized result of `{f}` for these arguments, in every process sharing the cache."),
            self.helper_sig("delete_memoized", true, err.clone()),
            {
                let call = self.call(
                    quote!(#p::delete_key(__cm_cache, &::std::string::ToString::to_string(&__cm_key))),
                    quote!(#p::delete_key_async(__cm_cache, ::std::string::ToString::to_string(&__cm_key))),
                );
                quote!(#key #call)
            },
        );
        let delete_all = self.helper(
            format!("Drops every memoized result of `{f}`, in every process sharing the cache, by giving it a new version."),
            self.helper_sig("delete_memoized_all", false, err.clone()),
            {
                let call = self.call(
                    quote!(#p::delete_all(__cm_cache, __cm_id.version_key())),
                    quote!(#p::delete_all_async(__cm_cache, __cm_id.version_key())),
                );
                quote!(#site #call)
            },
        );
        let verhash = self.helper(
            format!("Deletes the version of `{f}` from the cache (every memoized result of it is dropped with it)."),
            self.helper_sig("delete_memoized_verhash", false, err),
            {
                let call = self.call(
                    quote!(#p::delete_version(__cm_cache, __cm_id.version_key())),
                    quote!(#p::delete_version_async(__cm_cache, __cm_id.version_key())),
                );
                quote!(#site #call)
            },
        );
        let make_key = self.helper(
            format!("The cache key a call of `{f}` with these arguments uses."),
            self.helper_sig("make_cache_key", true, quote!(::std::string::String)),
            quote!(#key let _ = __cm_cache; ::std::string::ToString::to_string(&__cm_key)),
        );
        quote!(#delete #delete_all #verhash #make_key)
    }

    fn cached_helpers(&self) -> TokenStream {
        let p = &self.p;
        let f = self.func.name().to_string();
        let key = self.key();
        let err = quote!(::core::result::Result<(), #p::Error>);
        let call = self.call(
            quote!(#p::delete_key(__cm_cache, &::std::string::ToString::to_string(&__cm_key))),
            quote!(#p::delete_key_async(__cm_cache, ::std::string::ToString::to_string(&__cm_key))),
        );
        let delete = self.helper(
            format!("Drops the cached result of `{f}` (for these arguments)."),
            self.helper_sig("delete_cached", true, err),
            quote!(#key #call),
        );
        let make_key = self.helper(
            format!("The cache key `{f}` uses (for these arguments)."),
            self.helper_sig("make_cache_key", true, quote!(::std::string::String)),
            quote! {
                #key
                let _ = __cm_cache;
                ::std::string::ToString::to_string(&__cm_key)
            },
        );
        quote!(#delete #make_key)
    }

    /// `f_uncached`, and the function holding the body when the placement is known.
    fn body_fns(&self) -> TokenStream {
        let item = &self.func.item;
        let (vis, block) = (&item.vis, &item.block);
        let cfgs = cfgs(&item.attrs);
        let lints: Vec<_> = item.attrs.iter().filter(|a| is_lint_attr(a)).collect();
        let doc = format!(
            "`{}` without the cache: runs the body every time.",
            self.func.name()
        );
        if !self.knows_place() {
            // A second copy of the body: the wrapper cannot name this function. The copy's
            // lints are the wrapper's copy's, reported there; `dead_code` is allowed since
            // nothing but the user calls it.
            let sig = self.body_sig(self.name("uncached"));
            return quote! {
                #(#cfgs)*
                #(#lints)*
                #[doc = #doc]
                #[allow(dead_code)]
                #vis #sig #block
            };
        }
        let inner_sig = self.body_sig(self.inner_name());
        let mut sig = self.func.sig_without_mut();
        sig.ident = self.name("uncached");
        let call = self.call_inner();
        let call = if self.func.is_async() {
            quote!(#call.await)
        } else {
            call
        };
        // `f_uncached` allows `dead_code`: it is not called when the user does not call it.
        // That also makes it a root of the dead-code analysis, so the body's function is
        // never reported either, and a dead `f` is reported once. The body's function carries
        // the user's lint attributes, which were written for the body.
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #[allow(dead_code)]
            #vis #sig {
                #call
            }

            #(#cfgs)*
            #(#lints)*
            #[doc(hidden)]
            #inner_sig #block
        }
    }
}

/// The span of the first token of `tokens`.
fn first_span(tokens: &TokenStream) -> Span {
    tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// Every identifier in `tokens`, nested groups included, and every name a string literal may
/// capture as a format argument (`format!("{id}")`).
fn idents(tokens: TokenStream, out: &mut HashSet<String>) {
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            TokenTree::Group(g) => idents(g.stream(), out),
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                for (i, _) in text.match_indices('{') {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}
