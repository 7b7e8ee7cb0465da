//! The `lab` command's subcommands, one module each; `main.rs` parses and dispatches to them.

pub mod capture;
pub mod doctor;
pub mod explore;
pub mod lifecycle;
pub mod list;
pub mod run;
