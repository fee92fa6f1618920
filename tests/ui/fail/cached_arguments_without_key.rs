use cachemacro::cached;

#[cached(timeout = 5)]
fn users(page: u32) -> Vec<u32> {
    vec![page]
}

fn main() {}
