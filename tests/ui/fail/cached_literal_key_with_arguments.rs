use cachemacro::cached;

#[cached(key_prefix = "all_users")]
fn users(page: u32) -> Vec<u32> {
    vec![page]
}

fn main() {}
