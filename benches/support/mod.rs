//! Shared by the benches (`mod support;` in each). The servers they measure against come
//! from `cachemacro-testkit`, as the tests' do.

pub(crate) mod report;
