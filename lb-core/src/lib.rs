//! `lb-core`: the pure data path of the `lb` load balancer. No I/O, no root: packet bytes in,
//! an [`Action`] and output bytes out. The binary `lb` wraps it in NFQUEUE, sockets, netlink,
//! clocks and randomness.
//!
//! # Start here
//!
//! - [`decide()`] / [`decide_batch`] ([`decide`](mod@decide)): one packet (or a receive batch)
//!   and the [`State`] in, an [`Action`] out. The state holds the backends, the Maglev table,
//!   the connection table and the [`Counters`].
//! - [`emit()`] ([`emit`](mod@emit)): an [`Action`] into bytes: Caplance-compatible UDP
//!   encapsulation, L2 direct server return, MSS clamping, ICMP "fragmentation needed".
//!
//! # The map, from the bottom up
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | checked zero-copy views of Ethernet, IPv4, TCP, UDP; the flow 5-tuple |
//! | [`time`] | [`Nanos`], the monotonic time every function takes as an argument |
//! | [`duration`] | the one duration grammar (`500ms`, `2s`, `1m`, `1h`) of both crates |
//! | [`backend`] | [`BackendId`], [`BackendSpec`], [`Backend`]: what a backend is |
//! | [`action`] | [`Action`], [`DropReason`], [`Framing`]: what `decide` answers |
//! | [`forward`] | [`ForwardMode`], [`ForwardConfig`], the encapsulation's constants |
//! | [`select`] | flow hash, Maglev, connection table: which backend a flow goes to |
//! | [`decide`](mod@decide) | [`State`], [`decide()`], [`decide_batch`], [`Counters`] |
//! | [`emit`](mod@emit) | [`Action`] → output bytes |
//! | [`decap`] | the agent's check of an inner packet before re-injection |
//! | [`registry`] | the server's view of backends (static and registered), drains, health |
//! | [`config`] | the TOML configuration file, parsed and validated |
//! | [`protocol`] | both wire protocols, typed: agent ↔ server, and `lb ctl` |
//!
//! Each module takes only from the ones above it in this table (no import cycles).

#![warn(missing_docs)]

pub mod action;
pub mod backend;
pub mod config;
pub mod decap;
pub mod decide;
pub mod duration;
pub mod emit;
pub mod forward;
mod prefetch;
pub mod protocol;
pub mod registry;
pub mod rules;
pub mod select;
pub mod time;
pub mod wire;

pub use crate::action::{Action, DropReason, Framing};
pub use crate::backend::{Backend, BackendCounters, BackendId, BackendSpec, BackendState};
pub use crate::decide::{BackendError, Config, ConfigError, Counters, State, decide, decide_batch};
pub use crate::emit::{Emitted, emit};
pub use crate::forward::{ForwardConfig, ForwardMode};
pub use crate::select::conntable::{ConnTable, Timeouts};
pub use crate::select::hash::{HashKey, HashMode};
pub use crate::time::Nanos;
pub use crate::wire::MacAddr;
