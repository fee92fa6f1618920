//! A misused attribute is one error each, however often the function and its helpers are
//! called: they are still emitted, with the signatures they would have had.
use cachemacro::{cached, memoize};

#[memoize(timeot = 5)]
fn free(a: u8) -> u8 {
    a
}

#[cached(key_prefix = "one key for every page")]
fn page(number: u32) -> String {
    number.to_string()
}

#[memoize(timeout = -1)]
async fn fetch(id: u32) -> Result<String, String> {
    Ok(id.to_string())
}

#[derive(Hash)]
struct Person {
    id: u32,
}

impl Person {
    #[memoize(ignore = [nobody])]
    fn roles(&self, scope: u8) -> Vec<u32> {
        vec![self.id, u32::from(scope)]
    }

    #[memoize(cache_none = maybe)]
    fn find(id: u32) -> Option<Person> {
        Some(Person { id })
    }
}

fn main() -> Result<(), cachemacro::Error> {
    let _: u8 = free(1);
    free_delete_memoized(1)?;
    free_delete_memoized_all()?;
    free_delete_memoized_verhash()?;
    let _: String = free_make_cache_key(1);
    let _: u8 = free_uncached(1);

    let _: String = page(1);
    page_delete_cached(1)?;
    let _: String = page_make_cache_key(1);
    let _: String = page_uncached(1);

    let _ = async {
        let _: Result<String, String> = fetch(1).await;
        fetch_delete_memoized(1).await?;
        fetch_delete_memoized_all().await?;
        fetch_delete_memoized_verhash().await?;
        let _: String = fetch_make_cache_key(1).await;
        let _: Result<String, String> = fetch_uncached(1).await;
        Ok::<(), cachemacro::Error>(())
    };

    let person = Person { id: 1 };
    let _: Vec<u32> = person.roles(7);
    person.roles_delete_memoized(7)?;
    Person::roles_delete_memoized_all()?;
    Person::roles_delete_memoized_verhash()?;
    let _: String = person.roles_make_cache_key(7);
    let _: Vec<u32> = person.roles_uncached(7);

    let _: Option<Person> = Person::find(1);
    Person::find_delete_memoized(1)?;
    let _: String = Person::find_make_cache_key(1);
    let _: Option<Person> = Person::find_uncached(1);
    Ok(())
}
