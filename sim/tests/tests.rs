//! `sim` integration tests, one binary: a LAN behind a bridge, a router, determinism.

#[path = "suite/determinism.rs"]
mod determinism;
#[path = "suite/impair.rs"]
mod impair;
#[path = "suite/lan.rs"]
mod lan;
#[path = "suite/netfilter.rs"]
mod netfilter;
#[path = "suite/router.rs"]
mod router;
#[path = "suite/runtime.rs"]
mod runtime;
#[path = "suite/support.rs"]
mod support;
#[path = "suite/tcp.rs"]
mod tcp;
