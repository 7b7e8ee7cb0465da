//! Integration tests of the `nfqueue` crate: one test binary.

mod privileged;
