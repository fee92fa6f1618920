//! Flask-Caching's template fragment keys.

/// The key Flask-Caching's `{% cache %}` tag uses for a template fragment.
///
/// ```
/// use cachemacro_core::make_template_fragment_key;
/// assert_eq!(make_template_fragment_key("item", &["7"]), "_template_fragment_cache_item_7");
/// assert_eq!(make_template_fragment_key("item", &[]), "_template_fragment_cache_item");
/// ```
pub fn make_template_fragment_key(name: &str, vary_on: &[&str]) -> String {
    if vary_on.is_empty() {
        format!("_template_fragment_cache_{name}")
    } else {
        format!("_template_fragment_cache_{name}_{}", vary_on.join("_"))
    }
}
