//! `lab`: a network namespace test lab.
//!
//! A topology file becomes hosts (network namespaces), switches (Linux bridges, each in its own
//! namespace) and veth links, in a pipeline of separate steps:
//! [`topology`] (parse) → [`resolve`] → [`deploy`] → run ([`Lab`]) → remove.

pub mod net;
pub mod resolve;
pub mod topology;

pub use resolve::{Plan, resolve};
pub use topology::Topology;
