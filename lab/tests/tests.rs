//! Integration tests of the `lab` crate: one test binary, one module per area.

mod capture;
mod capture_cli;
mod mininet;
mod run_cli;
mod runner;
mod runtime;
mod sim;
mod trace;
