use cachemacro::memoize;

#[memoize(timeout = 5, timeout = 6)]
fn f(a: u8) -> u8 {
    a
}

fn main() {}
