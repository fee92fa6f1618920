//! Where the decorated function sits: in an `impl` (or a trait), or free.
//!
//! Generated code calls the function that holds the body as `Self::name(…)` in the first case
//! and `name(…)` in the second, and neither spelling compiles in the other place. The
//! function's tokens tell only when it has a receiver or names `Self`; for the rest (an
//! associated function such as `fn new(id: u32) -> Person` looks exactly like a free one),
//! the source around the function does: its span gives the file and position, and the
//! delimiters enclosing that position say whether the innermost one is an `impl` or `trait`
//! body. When neither can tell (code written by another macro, a tool that gives no file),
//! the placement is [`Placement::Unknown`] and the body is written twice, once in the wrapper
//! and once in `f_uncached`, which compiles anywhere.

use syn::visit::Visit;
use syn::{Ident, ItemFn};

/// Where the decorated function sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A module or a block: siblings are called as `name(…)`.
    Free,
    /// An `impl` or a trait: siblings are called as `Self::name(…)`.
    Assoc,
    /// Could not be told.
    Unknown,
}

/// Where `item` sits: from its own tokens if they tell, else from its source file.
pub(crate) fn placement(item: &ItemFn) -> Placement {
    if mentions_self(item) {
        return Placement::Assoc;
    }
    from_source(&item.sig.ident)
}

/// A receiver, or `Self` outside nested items (which have their own `Self`) and outside macro
/// invocations (whose tokens may be anything).
fn mentions_self(item: &ItemFn) -> bool {
    struct Finder(bool);
    impl<'a> Visit<'a> for Finder {
        fn visit_receiver(&mut self, _: &'a syn::Receiver) {
            self.0 = true;
        }
        fn visit_ident(&mut self, ident: &'a Ident) {
            self.0 |= ident == "Self";
        }
        fn visit_item(&mut self, _: &'a syn::Item) {}
        fn visit_macro(&mut self, _: &'a syn::Macro) {}
    }
    let mut finder = Finder(false);
    finder.visit_signature(&item.sig);
    finder.visit_block(&item.block);
    finder.0
}

fn from_source(ident: &Ident) -> Placement {
    // `unwrap` converts to the compiler's span, which exists only while a macro expands.
    if !proc_macro::is_available() {
        return Placement::Unknown;
    }
    let span = ident.span().unwrap();
    let Some(text) = span
        .local_file()
        .and_then(|path| std::fs::read_to_string(path).ok())
    else {
        return Placement::Unknown;
    };
    context_at(&text, span.line(), span.column(), &ident.to_string())
}

/// The placement of the function named `name` whose name starts at `line` and `column` (both
/// counted from 1, the column in characters, as the compiler gives them) in `text`. `Unknown`
/// unless `name` is found there, so a file that changed since it was compiled (an editor's
/// unsaved buffer) is never misread.
pub(crate) fn context_at(text: &str, line: usize, column: usize, name: &str) -> Placement {
    let Some(at) = offset(text, line, column) else {
        return Placement::Unknown;
    };
    let rest = &text[at..];
    let named = rest.starts_with(name)
        && !rest[name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
    if !named {
        return Placement::Unknown;
    }
    let mut scan = Scan::default();
    scan.run(&text[..at]);
    if scan.frames.contains(&Frame::Macro) {
        return Placement::Unknown;
    }
    match scan.frames.last() {
        Some(Frame::Assoc) => Placement::Assoc,
        _ => Placement::Free,
    }
}

/// The byte offset of a 1-based line and character column.
fn offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let line_text = &text[start..];
    let line_text = &line_text[..line_text.find('\n').unwrap_or(line_text.len())];
    let mut chars = line_text.char_indices();
    let (i, _) = chars.nth(column.checked_sub(1)?)?;
    Some(start + i)
}

/// An open delimiter before the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// The body of an `impl` or a trait.
    Assoc,
    /// Any other braces that can hold items: a module, a function body, a block.
    Item,
    /// A macro's tokens (`m! { … }`, `macro_rules! m { … }`), or parentheses and brackets,
    /// which hold items only in macros: the function may end up anywhere.
    Macro,
}

/// One token of the item being read at some depth: only what the kind of a brace needs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// A closed `(…)`, `[…]` or `{…}`.
    Group(char),
    Literal,
}

#[derive(Default)]
struct Scan {
    frames: Vec<Frame>,
    /// The tokens since the start of the current item or statement, per open delimiter (and
    /// one for the file).
    headers: Vec<Vec<Tok>>,
    /// A `{…}` just closed: the next token says whether it ended an item.
    after_braces: bool,
}

impl Scan {
    fn run(&mut self, text: &str) {
        self.headers.push(Vec::new());
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            match c {
                c if c.is_whitespace() => {}
                '/' if next == Some('/') => {
                    for (_, c) in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '/' if next == Some('*') => {
                    chars.next();
                    let mut depth = 1;
                    while let Some((_, c)) = chars.next() {
                        match (c, chars.peek().map(|&(_, n)| n)) {
                            ('*', Some('/')) => {
                                chars.next();
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            ('/', Some('*')) => {
                                chars.next();
                                depth += 1;
                            }
                            _ => {}
                        }
                    }
                }
                '"' => {
                    skip_string(&mut chars);
                    self.token(Tok::Literal);
                }
                '\'' => {
                    // A character literal (`'a'`, `'\n'`) or a lifetime or label (`'a`).
                    let mut ahead = chars.clone();
                    let first = ahead.next().map(|(_, c)| c);
                    let second = ahead.next().map(|(_, c)| c);
                    if first == Some('\\') || second == Some('\'') {
                        chars.next();
                        let mut escaped = first == Some('\\');
                        for (_, c) in chars.by_ref() {
                            if c == '\'' && !escaped {
                                break;
                            }
                            escaped = c == '\\' && !escaped;
                        }
                        self.token(Tok::Literal);
                    } else {
                        while chars
                            .peek()
                            .is_some_and(|&(_, c)| c.is_alphanumeric() || c == '_')
                        {
                            chars.next();
                        }
                    }
                }
                c if c.is_alphanumeric() || c == '_' => {
                    let mut end = i + c.len_utf8();
                    while let Some(&(j, c)) = chars.peek() {
                        if !(c.is_alphanumeric() || c == '_') {
                            break;
                        }
                        end = j + c.len_utf8();
                        chars.next();
                    }
                    let word = &text[i..end];
                    let next = chars.peek().map(|&(_, n)| n);
                    if c.is_ascii_digit() {
                        self.token(Tok::Literal);
                    } else if matches!(word, "b" | "c") && next == Some('"') {
                        chars.next();
                        skip_string(&mut chars);
                        self.token(Tok::Literal);
                    } else if matches!(word, "b") && next == Some('\'') {
                        chars.next();
                        let mut escaped = false;
                        for (_, c) in chars.by_ref() {
                            if c == '\'' && !escaped {
                                break;
                            }
                            escaped = c == '\\' && !escaped;
                        }
                        self.token(Tok::Literal);
                    } else if matches!(word, "r" | "br" | "cr")
                        && matches!(next, Some('"' | '#'))
                        && raw_string(&mut chars)
                    {
                        self.token(Tok::Literal);
                    } else {
                        self.token(Tok::Ident(word.to_owned()));
                    }
                }
                '{' => {
                    let frame = self.brace_kind();
                    self.open(frame);
                }
                '(' | '[' => self.open(Frame::Macro),
                '}' | ')' | ']' => {
                    if self.frames.pop().is_none() {
                        return;
                    }
                    self.headers.pop();
                    let open = match c {
                        '}' => '{',
                        ')' => '(',
                        _ => '[',
                    };
                    self.after_braces = false;
                    self.token(Tok::Group(open));
                    self.after_braces = c == '}';
                }
                ';' => {
                    self.token(Tok::Punct(';'));
                    self.header().clear();
                }
                c => self.token(Tok::Punct(c)),
            }
        }
    }

    fn header(&mut self) -> &mut Vec<Tok> {
        self.headers
            .last_mut()
            .expect("the file's header is never popped")
    }

    fn token(&mut self, tok: Tok) {
        // `Foo<{ N }>` and `{ … },` continue an item; anything else after braces starts the
        // next one.
        if std::mem::take(&mut self.after_braces)
            && !matches!(tok, Tok::Punct('>' | ',' | '.' | '?'))
        {
            self.header().clear();
        }
        self.header().push(tok);
    }

    fn open(&mut self, frame: Frame) {
        self.after_braces = false;
        self.frames.push(frame);
        self.headers.push(Vec::new());
    }

    /// The kind of the `{` about to open, from the tokens of the item it belongs to.
    fn brace_kind(&mut self) -> Frame {
        if std::mem::take(&mut self.after_braces) {
            self.header().clear();
        }
        let header = self.header();
        let n = header.len();
        // `m! {` and `macro_rules! m {`.
        if header[n.saturating_sub(2)..].contains(&Tok::Punct('!')) {
            return Frame::Macro;
        }
        let mut toks = header.iter().peekable();
        loop {
            match toks.next() {
                // Outer and inner attributes.
                Some(Tok::Punct('#')) => {
                    if toks.peek() == Some(&&Tok::Punct('!')) {
                        toks.next();
                    }
                    toks.next();
                }
                Some(Tok::Ident(word)) => match word.as_str() {
                    "unsafe" | "default" | "auto" | "pub" => {
                        if toks.peek() == Some(&&Tok::Group('(')) {
                            toks.next();
                        }
                    }
                    "impl" | "trait" => return Frame::Assoc,
                    _ => return Frame::Item,
                },
                _ => return Frame::Item,
            }
        }
    }
}

/// Skips a string's contents after its opening `"`.
fn skip_string(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
    let mut escaped = false;
    for (_, c) in chars.by_ref() {
        if c == '"' && !escaped {
            break;
        }
        escaped = c == '\\' && !escaped;
    }
}

/// Skips a raw string after its `r`, `br` or `cr`: `#`s, `"`, contents, `"`, as many `#`s.
/// `false`, having consumed nothing, for a raw identifier (`r#name`).
fn raw_string(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> bool {
    let mut ahead = chars.clone();
    let mut hashes = 0;
    while ahead.peek().is_some_and(|&(_, c)| c == '#') {
        ahead.next();
        hashes += 1;
    }
    if ahead.next().map(|(_, c)| c) != Some('"') {
        return false;
    }
    *chars = ahead;
    'outer: while let Some((_, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        for _ in 0..hashes {
            if chars.next_if(|&(_, c)| c == '#').is_none() {
                continue 'outer;
            }
        }
        break;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{context_at, Placement};

    /// The placement of the function named `target` (its first occurrence after `fn `).
    fn place(src: &str) -> Placement {
        let at = src.find("fn target").expect("a `fn target`") + 3;
        let line = src[..at].matches('\n').count() + 1;
        let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..at].chars().count() + 1;
        context_at(src, line, column, "target")
    }

    #[test]
    fn free_functions() {
        assert_eq!(place("fn target() {}"), Placement::Free);
        assert_eq!(place("mod m {\n    fn target() {}\n}"), Placement::Free);
        assert_eq!(
            place("impl S { fn m() {} }\nfn target() {}"),
            Placement::Free
        );
        assert_eq!(
            place("impl S {\n    fn m() {\n        fn target() {}\n    }\n}"),
            Placement::Free
        );
        assert_eq!(place("const _: () = { fn target() {} };"), Placement::Free);
        assert_eq!(
            place("fn f() -> impl Fn() { || {} }\nfn target() {}"),
            Placement::Free
        );
    }

    #[test]
    fn associated_functions() {
        assert_eq!(place("impl S {\n    fn target() {}\n}"), Placement::Assoc);
        assert_eq!(
            place("#[cfg(all())]\nunsafe impl<T: Tr<{ 1 }>> S<T> where T: Tr<{ 2 }>, { fn target() {} }"),
            Placement::Assoc
        );
        assert_eq!(
            place("struct S;\nimpl S { fn a() {} }\nimpl S { fn b() { {} } fn target() {} }"),
            Placement::Assoc
        );
        assert_eq!(place("pub trait T { fn target() {} }"), Placement::Assoc);
    }

    #[test]
    fn comments_strings_and_characters_are_not_code() {
        let src = r##"
            // impl S {
            /* impl S { /* nested */ { */
            const A: &str = "impl S { \" {";
            const B: &str = r#"impl S { " {"#;
            const C: char = '{';
            const D: u8 = b'{';
            fn f<'a>(x: &'a str) -> &'a str { x }
            fn r#type() {}
            fn target() {}
        "##;
        assert_eq!(place(src), Placement::Free);
        let src = "impl S {\n    const C: char = '}';\n    // }\n    fn target() {}\n}";
        assert_eq!(place(src), Placement::Assoc);
    }

    #[test]
    fn macros_are_unknown() {
        assert_eq!(place("m! {\n    fn target() {}\n}"), Placement::Unknown);
        assert_eq!(place("m!(fn target() {});"), Placement::Unknown);
        assert_eq!(
            place("macro_rules! m { () => { impl S { fn target() {} } } }"),
            Placement::Unknown
        );
    }

    #[test]
    fn a_changed_file_is_unknown() {
        assert_eq!(
            context_at("fn other() {}", 1, 4, "target"),
            Placement::Unknown
        );
        assert_eq!(
            context_at("fn target() {}", 9, 4, "target"),
            Placement::Unknown
        );
        assert_eq!(
            context_at("fn targets() {}", 1, 4, "target"),
            Placement::Unknown
        );
    }
}
