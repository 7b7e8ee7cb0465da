//! The determinism proofs (`determinism/mod.rs`) as a test binary of their own, so they run on
//! a machine that only they load: beside the other lab tests (eight labs at once, Mininet
//! builds, teardown storms) a loaded 2-core CI machine dropped or repeated a packet of the
//! exchange once in 20 runs, which says nothing about the lab's determinism.
//! `cargo test -p lab --test determinism`; `ci/determinism.sh` runs it with `--nocapture`.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

#[path = "determinism/mod.rs"]
mod proofs;
