//! The decorated function, as far as code generation needs it.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{
    FnArg, GenericArgument, GenericParam, Ident, ItemFn, Pat, PathArguments, ReturnType, Signature,
    Type,
};

/// How the return type maps to what is cached.
pub(crate) enum Ret {
    /// Cached as it is.
    Plain,
    /// `Result<T, _>`: only `Ok(T)` is cached.
    OkOnly(Type),
    /// `Option<T>`: only `Some(T)` is cached unless `cache_none`.
    SomeOnly(Type),
}

/// One named argument.
pub(crate) struct Arg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// The decorated function.
pub(crate) struct Func {
    pub(crate) item: ItemFn,
    /// The receiver's `self` token, for methods.
    pub(crate) receiver: Option<Span>,
    pub(crate) args: Vec<Arg>,
    /// Type parameters (part of the identity) and const parameters (part of the key).
    pub(crate) type_params: Vec<Ident>,
    pub(crate) const_params: Vec<Ident>,
    pub(crate) ret: Ret,
    /// The declared return type (`()` when there is none).
    pub(crate) ret_ty: Type,
}

impl Func {
    pub(crate) fn new(item: ItemFn, errors: &mut Vec<syn::Error>) -> Func {
        let sig = &item.sig;
        if let Some(c) = &sig.constness {
            errors.push(syn::Error::new_spanned(c, "a `const fn` cannot be cached"));
        }
        if let Some(v) = &sig.variadic {
            errors.push(syn::Error::new_spanned(
                v,
                "variadic functions cannot be cached",
            ));
        }
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r.self_token.span),
                FnArg::Typed(t) => match &*t.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => args.push(Arg {
                        name: p.ident.clone(),
                        ty: (*t.ty).clone(),
                    }),
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "cached functions need plain named arguments (`name: Type`), which become part of the key",
                    )),
                },
            }
        }
        let mut type_params = Vec::new();
        let mut const_params = Vec::new();
        for p in &sig.generics.params {
            match p {
                GenericParam::Type(t) => type_params.push(t.ident.clone()),
                GenericParam::Const(c) => const_params.push(c.ident.clone()),
                GenericParam::Lifetime(_) => {}
            }
        }
        let ret_ty = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        if contains_impl_trait(&ret_ty) {
            errors.push(syn::Error::new_spanned(
                &ret_ty,
                "an `impl Trait` return type cannot be cached: return a concrete type",
            ));
        }
        let ret = classify(&ret_ty);
        Func {
            item,
            receiver,
            args,
            type_params,
            const_params,
            ret,
            ret_ty,
        }
    }

    pub(crate) fn name(&self) -> &Ident {
        &self.item.sig.ident
    }

    pub(crate) fn is_async(&self) -> bool {
        self.item.sig.asyncness.is_some()
    }

    pub(crate) fn span(&self) -> Span {
        self.item.sig.ident.span()
    }

    /// The signature without `mut` on arguments and `self`: for functions that only pass
    /// their arguments on, where the user's `mut` would be unused.
    pub(crate) fn sig_without_mut(&self) -> Signature {
        let mut sig = self.item.sig.clone();
        for input in &mut sig.inputs {
            match input {
                FnArg::Receiver(r) if r.reference.is_none() => r.mutability = None,
                FnArg::Receiver(_) => {}
                FnArg::Typed(t) => {
                    if let Pat::Ident(p) = &mut *t.pat {
                        p.mutability = None;
                    }
                }
            }
        }
        sig
    }

    /// `::<T, N>` naming the function's type and const parameters, or nothing; lifetimes are
    /// left to inference (late-bound ones cannot be named).
    pub(crate) fn turbofish(&self) -> TokenStream {
        turbofish(&self.item.sig.generics)
    }

    /// `self, a, b`: the arguments, passed on.
    pub(crate) fn pass_args(&self) -> TokenStream {
        let recv = self.receiver.map(|_| quote!(self,));
        let args = self.args.iter().map(|a| &a.name);
        quote!(#recv #(#args),*)
    }
}

fn classify(ty: &Type) -> Ret {
    if let Type::Path(p) = ty {
        if let Some(last) = p.path.segments.last() {
            if let PathArguments::AngleBracketed(a) = &last.arguments {
                let first = a.args.iter().find_map(|g| match g {
                    GenericArgument::Type(t) => Some(t.clone()),
                    _ => None,
                });
                if let Some(t) = first {
                    if last.ident == "Result" {
                        return Ret::OkOnly(t);
                    }
                    if last.ident == "Option" && a.args.len() == 1 {
                        return Ret::SomeOnly(t);
                    }
                }
            }
        }
    }
    Ret::Plain
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'a> syn::visit::Visit<'a> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'a syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut f = Finder(false);
    syn::visit::visit_type(&mut f, ty);
    f.0
}

/// `::<T, N>` naming the type and const parameters of `generics` in their order, or nothing.
pub(crate) fn turbofish(generics: &syn::Generics) -> TokenStream {
    let params: Vec<&Ident> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            GenericParam::Const(c) => Some(&c.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    if params.is_empty() {
        TokenStream::new()
    } else {
        quote!(::<#(#params),*>)
    }
}
