//! `lab`: a network namespace test lab.
//!
//! A topology file becomes hosts (network namespaces), switches (Linux bridges, each in its own
//! namespace) and veth links, in a pipeline of separate steps:
//! [`topology`] (parse) → [`resolve`] → [`deploy`] → run ([`Lab`]) → [`remove`].
//! Packets are seen through [`capture`], turned into normalized [`trace`]s and [`ladder`]
//! diagrams, and asserted with [`snapshot`]s.

pub mod backend;
pub mod bins;
pub mod cancel;
pub mod capture;
pub mod check;
pub mod deploy;
pub mod error;
pub mod impair;
pub mod input;
pub mod kernel;
pub mod lab;
pub mod ladder;
pub mod mininet;
pub mod net;
pub mod netns;
pub mod remove;
pub mod resolve;
pub mod rootless;
pub mod scenario;
pub mod snapshot;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topology;
pub mod trace;

pub use error::LabError;
pub use lab::{Builder, Lab, LabOptions, Process};
pub use resolve::{Plan, resolve};
pub use topology::Topology;
