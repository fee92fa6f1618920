//! What is cached is `Ok`'s type for a `Result` and `Some`'s for an `Option`: that type is the
//! one named, once per function, whatever the options and the kind of function.
use cachemacro::{cached, memoize};

struct NotSerializable;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct NotSync(std::cell::Cell<u8>);

fn keep<T>(_: &T) -> bool {
    true
}

#[memoize(response_filter = keep)]
fn ok_type(a: u8) -> Result<NotSerializable, String> {
    let _ = a;
    Ok(NotSerializable)
}

#[cached(key_prefix = "some", forced_update = true)]
async fn some_type() -> Option<NotSync> {
    None
}

#[memoize]
fn in_a_vec(a: u8) -> Vec<NotSerializable> {
    let _ = a;
    Vec::new()
}

#[derive(Hash)]
struct Person;

impl Person {
    #[memoize]
    fn method(&self) -> Option<NotSerializable> {
        None
    }
}

#[memoize]
fn not_static<T>(t: T) -> T
where
    T: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + std::hash::Hash,
{
    t
}

fn main() {}
