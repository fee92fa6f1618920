//! Real servers for the tests: started on free loopback ports, stopped by PID.
#![allow(dead_code, unreachable_pub)]

pub mod memcached;
pub mod redis;
pub mod timing;
