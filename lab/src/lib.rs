//! `lab`: a network namespace test lab.

pub mod capture;
pub mod ladder;
pub mod snapshot;
pub mod trace;
