//! The two wire protocols of `lb`, as typed messages: [`agent`] (agent ↔ server registration on
//! TCP :1338) and [`ctl`] (the operator's `lb ctl` unix socket). See docs/protocol.md. And
//! [`metrics`], the counters as Prometheus reads them.

pub mod agent;
pub mod ctl;
pub mod metrics;
