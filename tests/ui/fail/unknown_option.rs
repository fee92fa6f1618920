use cachemacro::memoize;

#[memoize(timeot = 5)]
fn f(a: u8) -> u8 {
    a
}

fn main() {}
