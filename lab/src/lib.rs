//! `lab`: a network namespace test lab.

pub mod capture;
