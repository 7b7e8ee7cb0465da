//! Integration tests of the `nfqueue` crate: one test binary.

#[path = "../../lab/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

mod privileged;
