//! The command line in two stages: [`args`] (clap types, what the user typed) and [`settings`]
//! (the configuration file and the flags resolved into what `lb server` and `lb agent` run with).

pub mod args;
pub mod settings;

/// Bad input (a flag, a file, a request the other end refused): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
