//! Integration tests of the `lab` crate: one test binary, one module per area.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

mod capture;
mod capture_cli;
mod impair;
mod mininet;
mod rootless;
mod run_cli;
mod runner;
mod runtime;
mod sim;
mod trace;
