//! Generated code reaches the runtime through `cachemacro::__private` only; the runtime's own
//! modules are not part of the API.
use cachemacro::keys::Site;
use cachemacro::memo::run_sync;

fn main() {}
