use cachemacro::cached;

#[cached(key = format!("u{id}"), ignore = [id])]
fn f(id: u32) -> u32 {
    id
}

fn main() {}
