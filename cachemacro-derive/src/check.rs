//! Checks of the options against the function, before any code is generated.

use crate::attr::{Kind, Options};
use crate::model::Func;

pub(crate) fn check(opts: &Options, func: &Func, errors: &mut Vec<syn::Error>) {
    if let Some(names) = opts.ignore.get() {
        for name in names {
            let known = func.args.iter().any(|a| a.name == *name)
                || (name == "self" && func.receiver.is_some());
            if !known {
                let args: Vec<String> = func
                    .receiver
                    .iter()
                    .map(|_| "self".to_owned())
                    .chain(func.args.iter().map(|a| a.name.to_string()))
                    .collect();
                errors.push(syn::Error::new(
                    name.span(),
                    format!(
                        "`ignore` names `{name}`, which is not an argument of `{}` (arguments: {})",
                        func.name(),
                        if args.is_empty() {
                            "none".to_owned()
                        } else {
                            args.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    if opts.kind == Kind::Cached {
        let has_args = func.receiver.is_some() || !func.args.is_empty();
        match (&opts.key_prefix.value, &opts.key.value) {
            (Some((span, _)), Some(_)) => errors.push(syn::Error::new(
                *span,
                "give either `key_prefix` (a literal key) or `key` (an expression), not both",
            )),
            (Some((span, _)), None) if has_args => errors.push(syn::Error::new(
                *span,
                format!(
                    "`{}` has arguments, but `key_prefix` is one literal key: every call would get the \
                     result of the first; use `key = format!(...)` with the arguments, or #[memoize]",
                    func.name()
                ),
            )),
            (None, None) if has_args => errors.push(syn::Error::new(
                func.span(),
                format!(
                    "#[cached] on `{}`, which has arguments, needs `key = <expression of the arguments>`; \
                     or use #[memoize], which keys by every argument",
                    func.name()
                ),
            )),
            _ => {}
        }
    }
}
