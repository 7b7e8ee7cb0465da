//! `lab`: a network namespace test lab.
//!
//! A topology file becomes hosts (network namespaces), switches (Linux bridges, each in its own
//! namespace) and veth links, in a pipeline of separate steps:
//! [`topology`] (parse) → [`resolve`] → [`deploy`] → run ([`Lab`]) → [`remove`].

pub mod check;
pub mod deploy;
pub mod error;
pub mod lab;
pub mod net;
pub mod netns;
pub mod remove;
pub mod resolve;
pub mod state;
pub mod topology;

pub use error::LabError;
pub use lab::{Lab, LabOptions, Process};
pub use resolve::{Plan, resolve};
pub use topology::Topology;
