//! What the rules look at in a packet: [`PacketView`], its [`Proto`] and [`CtState`].

use std::fmt;
use std::net::Ipv4Addr;

/// The layer-4 protocol of a packet (or of a `-p` match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// Any other IP protocol number.
    Other(u8),
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Other(n) => n,
        }
    }

    /// The protocol of a number (6, 17 and 1 get their names).
    pub fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            n => Proto::Other(n),
        }
    }

    /// Reads `tcp`, `udp`, `icmp` or a number (case-insensitive, as iptables does).
    pub fn parse(word: &str) -> Option<Proto> {
        match word.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" => Some(Proto::Icmp),
            w => w.parse::<u8>().ok().map(Proto::from_number),
        }
    }

    /// Whether the protocol has ports (TCP, UDP).
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Other(n) => write!(f, "{n}"),
        }
    }
}

/// The conntrack state of a packet, as `-m conntrack --ctstate` and nft `ct state` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    /// The first packet of a connection conntrack has not seen both ways.
    New,
    /// A packet of a connection seen both ways.
    Established,
    /// A packet related to a connection (an ICMP error about it).
    Related,
    /// A packet conntrack could not place.
    Invalid,
    /// A packet conntrack does not track (a NOTRACK / `notrack` rule matched it earlier).
    Untracked,
}

impl CtState {
    /// Reads a state name (`NEW`, `established`, …), case-insensitive.
    pub fn parse(word: &str) -> Option<CtState> {
        match word.to_ascii_lowercase().as_str() {
            "new" => Some(CtState::New),
            "established" => Some(CtState::Established),
            "related" => Some(CtState::Related),
            "invalid" => Some(CtState::Invalid),
            "untracked" => Some(CtState::Untracked),
            _ => None,
        }
    }
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Untracked => "UNTRACKED",
        })
    }
}

/// The few facts about one packet that the supported matches read. A plain struct: the
/// simulator fills it from its own packet and conntrack model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketView {
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// Layer-4 protocol.
    pub proto: Proto,
    /// Source port (TCP, UDP; 0 otherwise).
    pub sport: u16,
    /// Destination port (TCP, UDP; 0 otherwise).
    pub dport: u16,
    /// The interface the packet came in on (PREROUTING, INPUT, FORWARD); `None` for a locally
    /// generated packet.
    pub in_iface: Option<String>,
    /// The interface the packet goes out of (FORWARD, OUTPUT, POSTROUTING); `None` before the
    /// routing decision.
    pub out_iface: Option<String>,
    /// The packet mark (`skb->mark`) when the traversal starts.
    pub mark: u32,
    /// The conntrack state; [`CtState::Untracked`] when conntrack does not track the packet.
    pub ct: CtState,
}

impl PacketView {
    /// A new-connection packet with no interfaces and mark 0 (tests and builders start here).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: Proto, sport: u16, dport: u16) -> Self {
        PacketView {
            src,
            dst,
            proto,
            sport,
            dport,
            in_iface: None,
            out_iface: None,
            mark: 0,
            ct: CtState::New,
        }
    }
}
