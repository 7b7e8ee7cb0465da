//! `sim`: a deterministic network simulator. Virtual time, one seed, Ethernet frames as real
//! bytes; no sockets, threads, files or clocks. The lab will drive it as a backend.
//!
//! # Start here
//!
//! Build a [`NetSpec`] (a wiring list: [`NetSpec::single`] is Mininet's `single,n`), make a
//! [`World`] from it with a [`SimConfig`] (the seed), then drive it: [`World::udp_bind`],
//! [`World::udp_send_to`], [`World::run_until`], [`World::udp_recv`], and read what
//! [`World::tap`] captured. See `docs/sim.md` for what is modelled and what is not.
//!
//! # The map, from the bottom up
//!
//! | module | what |
//! |---|---|
//! | [`time`] | [`SimTime`], virtual nanoseconds |
//! | [`rng`] | [`SimRng`], the seeded SplitMix64 generator |
//! | [`queue`] | [`EventQueue`]: (time, seeded tie-break, sequence) order |
//! | [`addr`] | [`MacAddr`], [`Ipv4Net`] |
//! | [`spec`] | [`NetSpec`]: hosts, bridges, links, routes, sysctls; [`SpecError`] |
//! | [`frame`] | Ethernet/ARP/IPv4/UDP/ICMP bytes through etherparse |
//! | [`impair`] | link impairments: [`impair::Impairment`], the seeded [`impair::Decider`], [`impair::Shaper`] |
//! | [`link`] | [`Attach`], [`Link`]: veth pairs |
//! | [`bridge`] | [`Bridge`]: FDB learning, flooding, ageing |
//! | [`neigh`] | [`NeighTable`]: the ARP cache, waiting packets, retries |
//! | [`ipv4`] | [`RouteTable`]: longest-prefix routes |
//! | [`kernel`] | [`KernelProfile`]: which Linux the hosts behave like |
//! | [`conntrack`] | a host's connection table, NAT bindings, confirm and its clashes |
//! | `hooks` | netfilter's state: steps per hook, a packet's conntrack, queues, holders |
//! | `netfilter` | the hooks in the stack: the rules (netfilter-model), conntrack, NAT |
//! | [`nfqueue`] | NFQUEUE queues, the driver's verdicts, the built-in holder |
//! | `flowmap`, [`fastpath`] | the balancer's fast path: a flow map at an interface's ingress, `fwd` |
//! | [`udp`] | [`SocketTable`], [`Datagram`] |
//! | [`tap`] | [`Captured`] frames, [`Direction`], [`TapPoint`] |
//! | [`host`] | [`Host`]: one namespace's state |
//! | [`event`] | [`Event`]: what the queue holds |
//! | [`error`] | [`SimError`] |
//! | [`world`] | [`World`]: building, running, the driver's calls |
//! | [`runtime`] | what programs change while it runs: addresses, sysctls, rules, raw sends |
//! | [`tcp`] | TCP connections and listeners ([`TcpId`], [`TcpState`]) |
//! | `tcp_stack` | TCP as Linux does it: handshake, data, ACKs, FIN, RST, SYN retransmission |
//! | `stack` | the hosts' IPv4 stack (`impl World`): ARP, forwarding, UDP, ICMP errors |

#![warn(missing_docs)]

pub mod addr;
pub mod bridge;
pub mod conntrack;
pub mod error;
pub mod event;
pub mod fastpath;
mod flowmap;
pub mod frame;
mod hooks;
pub mod host;
pub mod impair;
pub mod ipv4;
pub mod kernel;
pub mod link;
pub mod neigh;
mod netfilter;
pub mod nfqueue;
pub mod queue;
pub mod rng;
pub mod runtime;
pub mod spec;
mod stack;
pub mod tap;
pub mod tcp;
mod tcp_stack;
pub mod time;
pub mod udp;
pub mod world;

pub use addr::{Ipv4Net, MacAddr};
pub use bridge::Bridge;
pub use error::SimError;
pub use event::Event;
pub use host::{Host, PolicyRule};
pub use ipv4::RouteTable;
pub use kernel::KernelProfile;
pub use link::{Attach, Link};
pub use neigh::NeighTable;
pub use nfqueue::{HolderId, HolderStats, NfqId};
pub use queue::EventQueue;
pub use rng::SimRng;
pub use runtime::IfInfo;
pub use spec::{Endpoint, IfScope, NetSpec, SpecError, Sysctl};
pub use tap::{Captured, Direction, TapId, TapPoint};
pub use tcp::{TcpId, TcpState};
pub use time::SimTime;
pub use udp::{Datagram, SocketId, SocketTable};
pub use world::{Choice, SimConfig, World};
