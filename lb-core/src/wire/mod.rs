//! Thin, checked, zero-copy views over Ethernet / IPv4 / TCP / UDP, and the 5-tuple parser.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>` and has one accessor per field; field offsets are
//! named ranges (a `Field`, from `field.rs` with [`ParseError`]) in a private `mod field` of
//! each file, nobody indexes bytes elsewhere.
//!
//! **Guarantee**: a view made with `new_checked` (which runs `check_len`) never panics in any
//! accessor or setter afterwards. `new_unchecked` exists for buffers the caller has just
//! built; untrusted input always goes through `new_checked`.
//!
//! Building whole packets (in tests and fixtures) is etherparse's job; these views are for the
//! hot path, where we read a few fields and rewrite a few bytes in place.

pub mod checksum;
mod ethernet;
mod field;
mod flow;
mod ipv4;
mod tcp;
mod udp;

pub use ethernet::{ETHERTYPE_IPV4, EthernetFrame, MacAddr, MacParseError};
pub use field::ParseError;
pub use flow::{FlowKey, Parsed, Protocol, parse_ethernet, parse_ipv4, parse_l4};
pub use ipv4::Ipv4Packet;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;
