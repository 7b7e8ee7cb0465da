//! [`SimError`]: what a driver's call on a running world can get wrong.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::spec::SpecError;

/// An error from building or driving a world; each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The spec was refused.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A host's rule the simulator cannot evaluate (or the kernel would refuse).
    #[error(transparent)]
    Rule(#[from] netfilter_model::HostRuleError),
    /// A link index past the world's links.
    #[error("no link {link}")]
    NoSuchLink {
        /// The index.
        link: usize,
    },
    /// NFQUEUE `queue` of `host` has a program bound already.
    #[error("host {host:?}: queue {queue} is bound already")]
    QueueBound {
        /// The host.
        host: String,
        /// The queue number.
        queue: u16,
    },
    /// A queue handle or holder of another world, or closed.
    #[error("queue handle {id} does not exist")]
    UnknownQueue {
        /// The handle.
        id: usize,
    },
    /// A `conntrack -L` filter the simulator does not read.
    #[error("host {host:?}: {message}")]
    ConntrackFilter {
        /// The host.
        host: String,
        /// What was wrong.
        message: String,
    },
    /// A host name the world does not have.
    #[error("no host named {host:?}")]
    UnknownHost {
        /// The name.
        host: String,
    },
    /// An interface the host does not have.
    #[error("host {host:?} has no interface {interface:?}")]
    UnknownInterface {
        /// The host.
        host: String,
        /// The interface.
        interface: String,
    },
    /// A socket handle that is closed or from another world.
    #[error("socket {socket} is not open")]
    UnknownSocket {
        /// The handle's number.
        socket: usize,
    },
    /// A tap handle from another world.
    #[error("tap {tap} does not exist")]
    UnknownTap {
        /// The handle's number.
        tap: usize,
    },
    /// `bind` to an address the host does not hold (`EADDRNOTAVAIL`).
    #[error("host {host:?}: cannot bind {addr}: the address is not local")]
    AddressNotAvailable {
        /// The host.
        host: String,
        /// The address.
        addr: SocketAddrV4,
    },
    /// `bind` to a taken address and port (`EADDRINUSE`).
    #[error("host {host:?}: cannot bind {addr}: address in use")]
    AddressInUse {
        /// The host.
        host: String,
        /// The address.
        addr: SocketAddrV4,
    },
    /// No free ephemeral port (32768-60999) on the host.
    #[error("host {host:?}: no free ephemeral port")]
    NoFreePort {
        /// The host.
        host: String,
    },
    /// `send_to` a destination no route covers (`ENETUNREACH`).
    #[error("host {host:?}: no route to {dst}")]
    NoRoute {
        /// The host.
        host: String,
        /// The destination.
        dst: Ipv4Addr,
    },
    /// A send the simulator does not model (e.g. to a local, broadcast or multicast address,
    /// or a datagram that would need fragmenting).
    #[error("host {host:?}: sending to {dst} is not modelled: {what}")]
    NotModelled {
        /// The host.
        host: String,
        /// The destination.
        dst: SocketAddrV4,
        /// What part is not modelled.
        what: &'static str,
    },
}
