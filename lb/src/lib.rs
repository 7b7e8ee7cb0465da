//! `lb`: the pure core of a layer-4 load balancer (no I/O, no root).
//!
//! Packet bytes in, an [`Action`] out: [`decide`] parses a packet with the checked views of
//! [`wire`], finds the flow in the [`conntable`] or picks a backend with [`maglev`] over the
//! stable [`hash`], and updates counters; [`decide_batch`] does the same for a receive batch,
//! overlapping the cache misses of its flows. [`encap`] turns a decision into output bytes
//! (Caplance-compatible UDP encapsulation, or L2 direct server return) and handles the MTU.
//! NFQUEUE, sockets, clocks and randomness are adapters around this crate.

#![warn(missing_docs)]

pub mod config;
pub mod conntable;
pub mod control;
pub mod core;
pub mod encap;
pub mod hash;
pub mod maglev;
mod prefetch;
pub mod registry;
pub mod time;
pub mod wire;

pub use crate::conntable::{ConnTable, Timeouts};
pub use crate::core::{
    Action, Backend, BackendError, BackendId, BackendSpec, BackendState, Config, ConfigError,
    Counters, DropReason, Intake, State, decide, decide_batch,
};
pub use crate::encap::{Emitted, ForwardConfig, ForwardMode, emit};
pub use crate::hash::{HashKey, HashMode};
pub use crate::time::Nanos;
pub use crate::wire::MacAddr;
