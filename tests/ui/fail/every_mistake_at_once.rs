use cachemacro::memoize;

#[memoize(timeout = -1, bogus = 1, cache_none = true, cache_none = false, ignore = [missing])]
fn f(a: u8) -> u8 {
    a
}

fn main() {}
