use cachemacro::memoize;

struct Connection;

#[memoize]
fn f(conn: Connection, id: u32) -> u32 {
    let _ = conn;
    id
}

fn main() {}
