//! What is emitted when the attribute or the function has a mistake: the function as
//! written, every helper with the signature it would have had, and the errors.
//!
//! Without the helpers, each call of `f_delete_memoized` or `f_uncached` elsewhere in the
//! crate would be an error of its own, burying the one that matters. Their bodies do nothing
//! useful (`Ok(())`, an empty key, a call of the function): they are never run, since the
//! crate does not compile.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, Pat};

use crate::attr::{Kind, Options};
use crate::expand::{cfgs, is_lint_attr, private_path};
use crate::model::turbofish;
use crate::place::Placement;

pub(crate) fn fallback(
    opts: &Options,
    item: &ItemFn,
    place: Placement,
    errors: syn::Error,
) -> TokenStream {
    let p = private_path(opts);
    let sig = &item.sig;
    let name = &sig.ident;
    let helper = |suffix: &str| format_ident!("{}_{}", name, suffix, span = name.span());
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let asyncness = &sig.asyncness;
    let vis = &item.vis;
    let cfgs = cfgs(&item.attrs);

    // Arguments by name: the argument's own, or a fresh one for a pattern.
    let mut receiver = None;
    let mut names = Vec::new();
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                let mut r = r.clone();
                if r.reference.is_none() {
                    r.mutability = None;
                }
                receiver = Some(r);
            }
            FnArg::Typed(t) => {
                let arg = match &*t.pat {
                    Pat::Ident(p) => p.ident.clone(),
                    _ => format_ident!("__cm_arg{}", i),
                };
                let ty = &t.ty;
                args.push(quote!(#arg: #ty));
                names.push(arg);
            }
        }
    }
    let self_ref = receiver.as_ref().map(|_| quote!(&self,));
    let err = quote!(::core::result::Result<(), #p::Error>);
    let stub = |suffix: &str, with_args: bool, ret: TokenStream, body: TokenStream| {
        let helper = helper(suffix);
        let (recv, args) = if with_args {
            (self_ref.clone(), &args[..])
        } else {
            (None, &[][..])
        };
        quote! {
            #(#cfgs)*
            #[allow(dead_code, unused_variables, clippy::unused_async)]
            #vis #asyncness fn #helper #generics (#recv #(#args),*) -> #ret #where_clause {
                #body
            }
        }
    };
    let ok = quote!(::core::result::Result::Ok(()));
    let key = quote!(::std::string::String::new());
    let helpers = match opts.kind {
        Kind::Memoize => {
            let delete = stub("delete_memoized", true, err.clone(), ok.clone());
            let all = stub("delete_memoized_all", false, err.clone(), ok.clone());
            let verhash = stub("delete_memoized_verhash", false, err, ok);
            let make_key = stub("make_cache_key", true, quote!(::std::string::String), key);
            quote!(#delete #all #verhash #make_key)
        }
        Kind::Cached => {
            let delete = stub("delete_cached", true, err, ok);
            let make_key = stub("make_cache_key", true, quote!(::std::string::String), key);
            quote!(#delete #make_key)
        }
    };

    let uncached = helper("uncached");
    let uncached = match place {
        Placement::Free | Placement::Assoc => {
            let path = if place == Placement::Assoc {
                quote!(Self::#name)
            } else {
                quote!(#name)
            };
            let turbofish = turbofish(generics);
            let pass_self = receiver.as_ref().map(|_| quote!(self,));
            let mut call = quote!(#path #turbofish (#pass_self #(#names),*));
            if sig.unsafety.is_some() {
                call = quote!(unsafe { #call });
            }
            if asyncness.is_some() {
                call = quote!(#call.await);
            }
            let (unsafety, abi, output) = (&sig.unsafety, &sig.abi, &sig.output);
            let receiver = receiver.as_ref().map(|r| quote!(#r,));
            quote! {
                #(#cfgs)*
                #[allow(dead_code)]
                #vis #asyncness #unsafety #abi fn #uncached #generics (#receiver #(#args),*) #output #where_clause {
                    #call
                }
            }
        }
        // The function cannot be named: a copy of it, whose lints the function as written
        // reports.
        Placement::Unknown => {
            let lints = item.attrs.iter().filter(|a| is_lint_attr(a));
            let mut sig = sig.clone();
            sig.ident = uncached;
            let block = &item.block;
            quote! {
                #(#cfgs)*
                #(#lints)*
                #[allow(dead_code, unused_variables)]
                #vis #sig #block
            }
        }
    };
    let errors = errors.to_compile_error();
    quote! {
        #item
        #helpers
        #uncached
        #errors
    }
}
