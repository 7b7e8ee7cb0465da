//! Backends as the core sees them: identity, address, weight, state and counters.

use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// Names one backend for as long as it exists; never reused after removal (a generation
/// counter makes a removed backend's id stale, so old connection entries cannot hit a newcomer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    slot: u32,
    generation: u32,
}

impl BackendId {
    /// Builds an id from its parts (for tests and adapters that persist ids).
    pub const fn from_raw(slot: u32, generation: u32) -> Self {
        Self { slot, generation }
    }

    /// Index of the backend's slot in the state.
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// How many times the slot had been reused when this id was given out.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.slot, self.generation)
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether a backend takes new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Takes new flows and keeps tracked ones.
    #[default]
    Active,
    /// Keeps tracked flows, takes no new ones (for a graceful removal).
    Draining,
    /// Takes nothing: its tracked flows are moved to other backends.
    Down,
}

/// What the control plane says about a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Unique, stable name; it decides the backend's place in the Maglev table.
    pub name: String,
    /// Data-plane address (the UDP encapsulation goes to `addr:1337`).
    pub addr: Ipv4Addr,
    /// MAC address (for L2 direct server return).
    #[serde(default)]
    pub mac: MacAddr,
    /// Relative share of new flows; 0 = none.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Active, draining or down.
    #[serde(default)]
    pub state: BackendState,
}

fn default_weight() -> u32 {
    1
}

impl BackendSpec {
    /// An active backend of weight 1.
    pub fn new(name: impl Into<String>, addr: Ipv4Addr, mac: MacAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            mac,
            weight: 1,
            state: BackendState::Active,
        }
    }

    /// The same spec with another weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same spec with another state.
    pub fn with_state(mut self, state: BackendState) -> Self {
        self.state = state;
        self
    }
}

/// Traffic a backend received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// IP bytes forwarded (inner packet, before any encapsulation).
    pub bytes: u64,
    /// Flows assigned (new flows and flows moved here).
    pub flows: u64,
}

/// A backend in the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its id.
    pub id: BackendId,
    /// Its configuration.
    pub spec: BackendSpec,
    /// Its traffic.
    pub counters: BackendCounters,
}
