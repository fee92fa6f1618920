use cachemacro::memoize;

#[memoize]
fn f(a: u8) -> impl std::fmt::Display {
    a
}

fn main() {}
