//! Code generation: the wrapper that consults the cache, and the helper functions.

use std::hash::{Hash, Hasher};

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitInt};

use crate::attr::{Kind, Options, TimeoutOpt};
use crate::model::{Func, Ret};

struct Ctx<'a> {
    opts: &'a Options,
    func: &'a Func,
    /// `::cachemacro::__private` (or the `crate = "…"` root's).
    p: TokenStream,
}

pub(crate) fn expand(opts: &Options, func: &Func) -> TokenStream {
    let root = opts
        .krate
        .get()
        .map_or_else(|| quote!(::cachemacro), |path| quote!(#path));
    let cx = Ctx {
        opts,
        func,
        p: quote!(#root::__private),
    };
    let wrapper = cx.wrapper();
    let helpers = match opts.kind {
        Kind::Memoize => cx.memoize_helpers(),
        Kind::Cached => cx.cached_helpers(),
    };
    let uncached = cx.uncached();
    quote! {
        #wrapper
        #helpers
        #uncached
    }
}

impl Ctx<'_> {
    fn name(&self, suffix: &str) -> Ident {
        let name = self.func.name();
        format_ident!("{}_{}", name, suffix, span = name.span())
    }

    /// The type that is stored, and the `Shape` that maps the return type to it.
    fn shape(&self) -> (TokenStream, TokenStream) {
        let p = &self.p;
        let ret = &self.func.ret_ty;
        let cache_none = self.opts.cache_none.get().copied().unwrap_or(false);
        // Spanned so that a return type that cannot be cached is reported on the type.
        match &self.func.ret {
            Ret::OkOnly(t) => (quote!(#t), quote_spanned!(t.span()=> #p::OkOnly<#t, _>)),
            Ret::SomeOnly(t) if !cache_none => {
                (quote!(#t), quote_spanned!(t.span()=> #p::SomeOnly<#t>))
            }
            _ => (quote!(#ret), quote_spanned!(ret.span()=> #p::Plain<#ret>)),
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

    fn cfgs(&self) -> Vec<&Attribute> {
        self.func
            .item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .collect()
    }

    /// The identity of the function, as seen from any function generated for it.
    fn site(&self) -> TokenStream {
        let p = &self.p;
        let method = self.func.name().to_string();
        let source = if self.opts.source_check.get().copied().unwrap_or(false) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.func.item.block.to_token_stream_string().hash(&mut h);
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

    fn wrapper(&self) -> TokenStream {
        let p = &self.p;
        let item = &self.func.item;
        let (attrs, vis, sig, block) = (&item.attrs, &item.vis, &item.sig, &item.block);
        let ret = &self.func.ret_ty;
        let (stored, shape) = self.shape();
        let cache = self.cache_ref();
        let timeout = self.timeout();
        let unless = self.flag(self.opts.unless.get());
        let forced = self.flag(self.opts.forced_update.get());
        let filter = match self.opts.response_filter.get() {
            Some(e) => quote_spanned!(e.span()=>
                ::core::option::Option::Some(#e as fn(&#stored) -> bool)),
            None => quote!(::core::option::Option::None),
        };
        let key = self.key();
        let spec = quote! {
            #p::Spec::<#shape> {
                timeout: #timeout,
                forced_update: __cm_forced,
                response_filter: #filter,
            }
        };
        let body = if self.func.is_async() {
            quote! {
                let __cm_body = async move {
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
                        #p::run_async::<#shape, _>(__cm_cache, __cm_key, #spec, __cm_body).await
                    }
                }
            }
        } else {
            quote! {
                let mut __cm_body = move || -> #ret #block;
                match __cm_call {
                    ::core::option::Option::None => __cm_body(),
                    ::core::option::Option::Some(__cm_key) => {
                        #p::run_sync::<#shape>(__cm_cache, __cm_key, &#spec, __cm_body)
                    }
                }
            }
        };
        quote! {
            #(#attrs)*
            #[allow(unused_mut)]
            #vis #sig {
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
        let cfgs = self.cfgs();
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

    fn uncached(&self) -> TokenStream {
        let item = &self.func.item;
        let mut sig = item.sig.clone();
        sig.ident = self.name("uncached");
        let (vis, block) = (&item.vis, &item.block);
        let cfgs = self.cfgs();
        let doc = format!(
            "`{}` without the cache: runs the body every time.",
            self.func.name()
        );
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            // Arguments that only the key or `unless` read are unused here.
            #[allow(dead_code, unused_variables)]
            #vis #sig #block
        }
    }
}

trait TokenString {
    fn to_token_stream_string(&self) -> String;
}

impl<T: quote::ToTokens> TokenString for T {
    fn to_token_stream_string(&self) -> String {
        self.to_token_stream().to_string()
    }
}
