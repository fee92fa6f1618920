use cachemacro::memoize;

struct NotSerializable;

#[memoize]
fn f(a: u8) -> NotSerializable {
    let _ = a;
    NotSerializable
}

fn main() {}
