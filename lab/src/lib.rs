//! `lab`: a network namespace test lab.
