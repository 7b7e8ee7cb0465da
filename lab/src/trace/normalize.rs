//! Naming and numbering: topology names for addresses, aliases for ephemeral ports, relative
//! TCP sequence numbers, and the text of each line. The rules are in docs/trace-format.md.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::decode::{Icmp, Igmp, IpPacket, L4, Packet, Tcp, proto_name};
use super::{NameMap, TraceOptions};

/// Ports from here up are Linux's ephemeral range (ip_local_port_range starts at 32768).
pub const EPHEMERAL_PORTS_START: u16 = 32768;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// One direction of a TCP connection: (source, source port, destination, destination port).
type Dir = (IpAddr, u16, IpAddr, u16);

/// What the whole trace shows of one direction, collected before any line is written so that
/// numbers do not depend on which capture point saw a packet first.
#[derive(Debug, Default)]
struct DirSeen {
    /// Sequence numbers of the SYNs sent this way, in order of appearance, without repeats.
    isns: Vec<u32>,
    /// The first sequence number seen this way (RSTs with seq 0 left out).
    first_seq: Option<u32>,
    /// The first acknowledgment number seen this way.
    first_ack: Option<u32>,
}

/// The identity of a packet across capture points (same bytes seen at two places).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PacketKey {
    src: IpAddr,
    dst: IpAddr,
    id: u16,
    proto: u8,
    ports: (u16, u16),
    seq_ack_flags: (u32, u32, u8),
    payload: (usize, u64),
}

/// A frame after normalization.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    /// The trace line.
    pub line: String,
    /// A short label for the ladder: TCP flags, `UDP len 5`, …
    pub label: String,
    /// Names of the source and destination addresses (no ports).
    pub src: Option<String>,
    pub dst: Option<String>,
    pub key: Option<PacketKey>,
}

/// Assigns names and numbers in order of appearance; one per trace.
pub(crate) struct Normalizer<'a> {
    names: &'a NameMap,
    opts: &'a TraceOptions,
    dirs: HashMap<Dir, DirSeen>,
    ports: HashMap<(IpAddr, u8, u16), usize>,
    ports_per_addr: HashMap<IpAddr, usize>,
    unnamed: BTreeMap<IpAddr, usize>,
    macs: HashMap<[u8; 6], usize>,
}

impl<'a> Normalizer<'a> {
    pub(crate) fn new(names: &'a NameMap, opts: &'a TraceOptions) -> Self {
        Self {
            names,
            opts,
            dirs: HashMap::new(),
            ports: HashMap::new(),
            ports_per_addr: HashMap::new(),
            unnamed: BTreeMap::new(),
            macs: HashMap::new(),
        }
    }

    /// First pass: records the TCP numbers of a packet (and of what it encapsulates).
    pub(crate) fn observe(&mut self, packet: &Packet) {
        let Packet::Ip(ip) = packet else { return };
        match &ip.l4 {
            L4::Tcp(t) => {
                let seen = self
                    .dirs
                    .entry((ip.src, t.sport, ip.dst, t.dport))
                    .or_default();
                if t.flags & SYN != 0 && !seen.isns.contains(&t.seq) {
                    seen.isns.push(t.seq);
                }
                if !(t.flags & RST != 0 && t.seq == 0) {
                    seen.first_seq.get_or_insert(t.seq);
                }
                if t.flags & ACK != 0 {
                    seen.first_ack.get_or_insert(t.ack);
                }
            }
            L4::Udp {
                encap: Some(inner), ..
            } => self.observe(inner),
            _ => {}
        }
    }

    /// Second pass: the line, label and identity of a packet.
    pub(crate) fn render(&mut self, packet: &Packet) -> Rendered {
        match packet {
            Packet::Ip(ip) => self.render_ip(ip),
            Packet::Arp {
                op,
                sender_mac,
                sender,
                target,
            } => {
                let (s, t) = (
                    self.addr(IpAddr::V4(*sender)),
                    self.addr(IpAddr::V4(*target)),
                );
                let (line, label) = match op {
                    1 => (
                        format!("ARP, Request who-has {t} tell {s}"),
                        format!("ARP who-has {t}"),
                    ),
                    2 => {
                        let mac = self.mac(*sender_mac);
                        (
                            format!("ARP, Reply {s} is-at {mac}"),
                            format!("ARP {s} is-at {mac}"),
                        )
                    }
                    op => (format!("ARP, op {op}"), format!("ARP op {op}")),
                };
                Rendered {
                    line,
                    label,
                    src: Some(s),
                    dst: Some(t),
                    key: None,
                }
            }
            Packet::OtherEther { ethertype, len } => Rendered {
                line: format!("ethertype 0x{ethertype:04x}, length {len}"),
                label: format!("0x{ethertype:04x}"),
                src: None,
                dst: None,
                key: None,
            },
            Packet::Malformed { error, len } => Rendered {
                line: format!("malformed frame ({error}), length {len}"),
                label: "malformed".into(),
                src: None,
                dst: None,
                key: None,
            },
        }
    }

    fn render_ip(&mut self, ip: &IpPacket) -> Rendered {
        let v6 = if ip.src.is_ipv6() { "IP6 " } else { "" };
        let (src, dst) = (self.addr(ip.src), self.addr(ip.dst));
        let mut key = PacketKey {
            src: ip.src,
            dst: ip.dst,
            id: ip.id,
            proto: 0,
            ports: (0, 0),
            seq_ack_flags: (0, 0, 0),
            payload: (0, 0),
        };
        let (line, label) = match &ip.l4 {
            L4::Tcp(t) => {
                key.proto = 6;
                key.ports = (t.sport, t.dport);
                key.seq_ack_flags = (t.seq, t.ack, t.flags);
                key.payload = (t.payload_len, t.payload_hash);
                let (s, d) = (
                    self.endpoint(ip.src, 6, t.sport),
                    self.endpoint(ip.dst, 6, t.dport),
                );
                let body = self.tcp_body(ip, t);
                let mut label = format!("[{}]", tcp_flags(t.flags));
                if t.payload_len > 0 {
                    let _ = write!(label, " len {}", t.payload_len);
                }
                (format!("{v6}{s} > {d}: {body}"), label)
            }
            L4::Udp {
                sport,
                dport,
                payload_len,
                payload_hash,
                encap,
            } => {
                key.proto = 17;
                key.ports = (*sport, *dport);
                key.payload = (*payload_len, *payload_hash);
                let (s, d) = (
                    self.endpoint(ip.src, 17, *sport),
                    self.endpoint(ip.dst, 17, *dport),
                );
                match encap {
                    Some(inner) => {
                        let inner = self.render(inner);
                        (
                            format!("{v6}{s} > {d}: UDP encap {{ {} }}", inner.line),
                            format!("encap {}", inner.label),
                        )
                    }
                    None => (
                        format!("{v6}{s} > {d}: UDP, length {payload_len}"),
                        format!("UDP len {payload_len}"),
                    ),
                }
            }
            L4::Icmp(icmp) => {
                key.proto = if ip.src.is_ipv6() { 58 } else { 1 };
                let (body, label) = self.icmp(icmp);
                (format!("{v6}{src} > {dst}: {body}"), label)
            }
            L4::Igmp(igmp) => {
                key.proto = 2;
                let (body, label) = igmp_text(igmp);
                (format!("{v6}{src} > {dst}: {body}"), label)
            }
            L4::Fragment { proto, len } => {
                key.proto = *proto;
                let p =
                    proto_name(*proto).map_or_else(|| format!("ip-proto-{proto}"), str::to_string);
                (
                    format!("{v6}{src} > {dst}: {p} fragment, length {len}"),
                    format!("{p} fragment"),
                )
            }
            L4::Other { proto, len } => {
                key.proto = *proto;
                (
                    format!("{v6}{src} > {dst}: ip-proto-{proto}, length {len}"),
                    format!("ip-proto-{proto}"),
                )
            }
        };
        Rendered {
            line,
            label,
            src: Some(src),
            dst: Some(dst),
            key: Some(key),
        }
    }

    fn tcp_body(&self, ip: &IpPacket, t: &Tcp) -> String {
        let dir = (ip.src, t.sport, ip.dst, t.dport);
        let rev = (ip.dst, t.dport, ip.src, t.sport);
        let mut out = format!("Flags [{}]", tcp_flags(t.flags));
        // As tcpdump: seq only when the segment occupies sequence space or is a RST.
        if t.payload_len > 0 || t.flags & (SYN | FIN | RST) != 0 {
            let seq = if t.flags & RST != 0 && t.seq == 0 {
                // RFC 793's reply to a segment without ACK: literally 0, in no one's space.
                0
            } else {
                self.relative(t.seq, self.bases(dir, rev))
            };
            let _ = write!(out, ", seq {seq}");
            if t.payload_len > 0 {
                let _ = write!(out, ":{}", u64::from(seq) + t.payload_len as u64);
            }
        }
        if t.flags & ACK != 0 {
            let _ = write!(out, ", ack {}", self.relative(t.ack, self.bases(rev, dir)));
        }
        if self.opts.window {
            let _ = write!(out, ", win {}", t.window);
        }
        if self.opts.tcp_options && !t.options.is_empty() {
            let _ = write!(out, ", options [{}]", t.options.join(","));
        }
        let _ = write!(out, ", length {}", t.payload_len);
        out
    }

    /// Candidate initial sequence numbers of direction `dir` (`rev` is the other way).
    fn bases(&self, dir: Dir, rev: Dir) -> Vec<u32> {
        let seen = self.dirs.get(&dir);
        if let Some(s) = seen.filter(|s| !s.isns.is_empty()) {
            return s.isns.clone();
        }
        if let Some(first) = seen.and_then(|s| s.first_seq) {
            return vec![first];
        }
        // Never saw this direction send: the other side's first ack says where it started.
        self.dirs
            .get(&rev)
            .and_then(|s| s.first_ack)
            .map(|a| vec![a.wrapping_sub(1)])
            .unwrap_or_default()
    }

    /// `value` minus the nearest base at or below it in sequence space (mod 2^32).
    fn relative(&self, value: u32, bases: Vec<u32>) -> u32 {
        bases
            .into_iter()
            .map(|b| value.wrapping_sub(b))
            .min()
            .unwrap_or(value)
    }

    fn icmp(&mut self, icmp: &Icmp) -> (String, String) {
        let (family, family6) = ("ICMP", "ICMP6");
        match icmp {
            Icmp::Echo { reply, seq, len } => {
                let what = if *reply { "echo reply" } else { "echo request" };
                (
                    format!("ICMP {what}, seq {seq}, length {len}"),
                    format!("ICMP {what}"),
                )
            }
            Icmp::Unreachable {
                code,
                dst,
                proto,
                dport,
                len,
            } => {
                let host = dst.map_or_else(|| "?".to_string(), |d| self.addr(d));
                let what = match (code, dport, proto_name(*proto)) {
                    (3, Some(port), Some(p)) => {
                        let port = match dst {
                            Some(d) => self.port(*d, *proto, *port),
                            None => port.to_string(),
                        };
                        format!("{host} {p} port {port} unreachable")
                    }
                    (0, _, _) => format!("net {host} unreachable"),
                    (1, _, _) => format!("host {host} unreachable"),
                    (2, _, _) => format!("{host} protocol {proto} unreachable"),
                    (4, _, _) => format!("{host} unreachable - need to frag"),
                    (13, _, _) => format!("host {host} unreachable - admin prohibited filter"),
                    (c, _, _) => format!("{host} unreachable - code {c}"),
                };
                (
                    format!("{family} {what}, length {len}"),
                    "ICMP unreachable".into(),
                )
            }
            Icmp::TimeExceeded { len } => (
                format!("{family} time exceeded in-transit, length {len}"),
                "ICMP time exceeded".into(),
            ),
            Icmp::NeighborSolicitation { target } => {
                let t = target.map_or_else(|| "?".to_string(), |t| self.addr(IpAddr::V6(t)));
                (
                    format!("{family6}, neighbor solicitation, who has {t}"),
                    "NS".into(),
                )
            }
            Icmp::NeighborAdvertisement { target } => {
                let t = target.map_or_else(|| "?".to_string(), |t| self.addr(IpAddr::V6(t)));
                (
                    format!("{family6}, neighbor advertisement, tgt is {t}"),
                    "NA".into(),
                )
            }
            Icmp::RouterSolicitation => (format!("{family6}, router solicitation"), "RS".into()),
            Icmp::RouterAdvertisement => (format!("{family6}, router advertisement"), "RA".into()),
            Icmp::MulticastListenerReport => (
                format!("{family6}, multicast listener report"),
                "MLD".into(),
            ),
            Icmp::Other {
                v6,
                kind,
                code,
                len,
            } => {
                let f = if *v6 { family6 } else { family };
                (
                    format!("{f} type {kind}, code {code}, length {len}"),
                    format!("{f} type {kind}"),
                )
            }
        }
    }

    /// The topology name of an address; unnamed IPv4 as dotted quad, unnamed unicast IPv6 as
    /// `ip6-N` in order of appearance (link-local addresses derive from random MACs).
    pub(crate) fn addr(&mut self, addr: IpAddr) -> String {
        if let Some(name) = self.names.name(addr) {
            return name.to_string();
        }
        match addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) if a.is_multicast() || a.is_unspecified() || a.is_loopback() => {
                a.to_string()
            }
            IpAddr::V6(_) => {
                let next = self.unnamed.len() + 1;
                format!("ip6-{}", self.unnamed.entry(addr).or_insert(next))
            }
        }
    }

    fn endpoint(&mut self, addr: IpAddr, proto: u8, port: u16) -> String {
        let name = self.addr(addr);
        let port = self.port(addr, proto, port);
        format!("{name}.{port}")
    }

    /// A port as shown: the number, or `pN` for the N-th ephemeral (protocol, port) seen on
    /// this address. The protocol is part of the key: TCP and UDP ports are separate spaces,
    /// and the kernel may hand a TCP socket the number a UDP socket already has; aliasing by
    /// number alone would make two flows share an alias only when that coincidence happens.
    fn port(&mut self, addr: IpAddr, proto: u8, port: u16) -> String {
        if port < EPHEMERAL_PORTS_START || self.names.is_service_port(port) {
            return port.to_string();
        }
        let next = self.ports_per_addr.get(&addr).copied().unwrap_or(0) + 1;
        let n = *self.ports.entry((addr, proto, port)).or_insert_with(|| {
            self.ports_per_addr.insert(addr, next);
            next
        });
        format!("p{n}")
    }

    fn mac(&mut self, mac: [u8; 6]) -> String {
        if let Some(name) = self.names.mac_name(mac) {
            return name.to_string();
        }
        let next = self.macs.len() + 1;
        format!("mac{}", self.macs.entry(mac).or_insert(next))
    }
}

/// An IGMP message as tcpdump writes it without `-v`, and its ladder label. Group addresses
/// are written as numbers: they name groups, not hosts.
fn igmp_text(igmp: &Igmp) -> (String, String) {
    match igmp {
        Igmp::Query { version, group } => {
            let mut line = format!("igmp query v{version}");
            if let Some(g) = group {
                let _ = write!(line, " [gaddr {g}]");
            }
            (line, format!("IGMP query v{version}"))
        }
        Igmp::Report { version, group } => (
            format!("igmp v{version} report {group}"),
            format!("IGMP v{version} report"),
        ),
        Igmp::ReportV3 { records } => (
            format!("igmp v3 report, {records} group record(s)"),
            "IGMP v3 report".into(),
        ),
        Igmp::Leave { group } => (format!("igmp leave {group}"), "IGMP leave".into()),
        Igmp::Other { kind } => (format!("igmp-{kind}"), format!("IGMP type {kind}")),
    }
}

/// TCP flags as tcpdump writes them: F S R P . U E W in that order, `none` when empty.
pub(crate) fn tcp_flags(flags: u8) -> String {
    const ORDER: [(u8, char); 8] = [
        (FIN, 'F'),
        (SYN, 'S'),
        (RST, 'R'),
        (0x08, 'P'),
        (ACK, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    let s: String = ORDER
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() { "none".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags;

    #[test]
    fn flags_read_like_tcpdump() {
        let cases = [
            (0x02, "S"),
            (0x12, "S."),
            (0x10, "."),
            (0x18, "P."),
            (0x11, "F."),
            (0x14, "R."),
            (0x04, "R"),
            (0x19, "FP."),
            (0xc2, "SEW"),
            (0x00, "none"),
        ];
        for (bits, text) in cases {
            assert_eq!(tcp_flags(bits), text, "flags {bits:#04x}");
        }
    }
}
