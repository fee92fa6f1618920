use cachemacro::memoize;

#[memoize(ignore = [db, nope])]
fn f(db: u8, user: u32) -> u32 {
    user + u32::from(db)
}

fn main() {}
