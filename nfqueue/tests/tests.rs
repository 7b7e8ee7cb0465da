//! Integration tests of the `nfqueue` crate: one test binary.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

mod privileged;
