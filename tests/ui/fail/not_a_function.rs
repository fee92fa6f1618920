use cachemacro::memoize;

#[memoize]
struct S;

fn main() {}
