//! Shared constants, provisioning and packet builders (etherparse), hex helpers.

use etherparse::{PacketBuilder, TcpOptionElement};
use lb_core::{BackendSpec, Config, ForwardConfig, ForwardMode, Framing, HashMode, MacAddr, State};
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The service address (the seed's VIP).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
/// The balancer (h1).
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The balancer's MAC.
pub const LB_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// MAC of the router clients come through.
pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

/// Backend `hN` at 10.0.0.N with MAC 02:00:00:00:00:0N.
pub fn host(n: u8) -> BackendSpec {
    BackendSpec::new(
        format!("h{n}"),
        Ipv4Addr::new(10, 0, 0, n),
        MacAddr([2, 0, 0, 0, 0, n]),
    )
}

/// How a fixture table sets the balancer up; everything else is fixed here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    pub framing: Framing,
    #[serde(default)]
    pub clamp_mss: bool,
    pub mode: ForwardMode,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default)]
    pub hash_mode: HashMode,
    pub backends: Vec<BackendSpec>,
}

fn default_mtu() -> u16 {
    1500
}

/// The configuration every test uses, with the table's intake, mode, MTU and hash mode.
pub fn config(p: &Provision) -> Config {
    Config {
        vips: vec![VIP],
        framing: p.framing,
        hash_mode: p.hash_mode,
        forward: ForwardConfig {
            mode: p.mode,
            local_ip: LB_IP,
            local_mac: LB_MAC,
            mtu: p.mtu,
            clamp_mss: p.clamp_mss,
            ..ForwardConfig::default()
        },
        conn_capacity: 65_536,
        ..Config::default()
    }
}

/// A state provisioned as the table says.
pub fn provision(p: &Provision) -> State {
    let mut state = State::new(config(p)).expect("fixture config is valid");
    for b in &p.backends {
        state
            .add_backend(b.clone())
            .expect("fixture backends are valid");
    }
    state
}

/// A provisioning with `n` active backends h2..h(n+1), IP intake, UDP encapsulation.
pub fn hosts(n: u8) -> Provision {
    Provision {
        framing: Framing::Ipv4,
        clamp_mss: false,
        mode: ForwardMode::UdpEncap,
        mtu: 1500,
        hash_mode: HashMode::FiveTuple,
        backends: (2..2 + n).map(host).collect(),
    }
}

/// A state with backends `specs` and a small connection table of `capacity`.
pub fn state_with(specs: &[BackendSpec], capacity: usize) -> State {
    let mut cfg = config(&hosts(0));
    cfg.conn_capacity = capacity;
    let mut state = State::new(cfg).expect("valid config");
    for s in specs {
        state.add_backend(s.clone()).expect("valid backend");
    }
    state
}

/// TCP flags for [`tcp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Syn,
    Ack,
    FinAck,
    Rst,
}

/// A client → VIP TCP segment (IPv4 packet).
pub fn tcp(
    src: Ipv4Addr,
    sport: u16,
    dport: u16,
    seg: Seg,
    mss: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    tcp_to(src, VIP, sport, dport, seg, mss, payload)
}

/// A TCP segment to any destination (IPv4 packet).
pub fn tcp_to(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seg: Seg,
    mss: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).tcp(sport, dport, 1000, 64240);
    let b = match seg {
        Seg::Syn => b.syn(),
        Seg::Ack => b.ack(1),
        Seg::FinAck => b.fin().ack(1),
        Seg::Rst => b.rst(),
    };
    let b = match mss {
        Some(m) => b
            .options(&[TcpOptionElement::MaximumSegmentSize(m)])
            .expect("MSS fits"),
        None => b,
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builds");
    out
}

/// A client → VIP UDP datagram (IPv4 packet).
pub fn udp(src: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), VIP.octets(), 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("builds");
    out
}

/// The IPv4 packet `ip` in an Ethernet frame from the router to the balancer.
pub fn framed(ip: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::Ethernet2Header {
        source: ROUTER_MAC.0,
        destination: LB_MAC.0,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .expect("writes");
    out.extend_from_slice(ip);
    out
}

/// Lower-case hex in lines of 16 bytes (for fixture files).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if i > 0 {
            s.push('\n');
        }
        for b in chunk {
            let _ = write!(s, "{b:02x}");
        }
    }
    s
}

/// Parses hex, ignoring whitespace.
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair = std::str::from_utf8(p).map_err(|e| e.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|e| format!("{pair:?}: {e}"))
        })
        .collect()
}

/// A tcpdump -X style dump, marking with `*` lines that differ from `other`.
pub fn hexdump(bytes: &[u8], other: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let off = i * 16;
        let differs = other.get(off..off + chunk.len()) != Some(chunk);
        let _ = write!(s, "{} {off:04x}:", if differs { '*' } else { ' ' });
        for b in chunk {
            let _ = write!(s, " {b:02x}");
        }
        s.push('\n');
    }
    if bytes.is_empty() {
        s.push_str("  (nothing)\n");
    }
    s
}
