//! Writes `lb-core/fixtures/*.toml`. Run on purpose, then review the diff:
//! `LB_WRITE_FIXTURES=1 cargo test -p lb-core --test tests write_fixture_files -- --ignored`
//!
//! Inputs and expected outputs are built here with etherparse, independently of `lb_core::encap`
//! (a clamped SYN is rebuilt with the smaller MSS and a fresh checksum, outer headers are
//! etherparse's). Only the backend a new flow lands on is taken from `lb` at generation time:
//! the file then pins it, so a change in the hash or the Maglev table shows up as a diff.

use crate::provision::*;
use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, IpDscp, IpFragOffset, IpNumber,
    Ipv4Header, UdpHeader, icmpv4::DestUnreachableHeader,
};
use lb_core::{Action, BackendState, ForwardMode, Framing, HashMode, Nanos, decide};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

enum Expect {
    /// Forwarded; `inner` replaces the input's IP packet in the output (an MSS rewrite);
    /// `same_as` names an earlier case that must have gone to the same backend.
    Forward {
        new_flow: bool,
        inner: Option<Vec<u8>>,
        same_as: Option<u32>,
    },
    Drop(&'static str),
    FragNeeded(u16),
}

struct GenCase {
    desc: &'static str,
    at_ms: u64,
    input: Vec<u8>,
    expect: Expect,
}

fn case(desc: &'static str, input: Vec<u8>, expect: Expect) -> GenCase {
    GenCase {
        desc,
        at_ms: 0,
        input,
        expect,
    }
}

fn new_flow() -> Expect {
    Expect::Forward {
        new_flow: true,
        inner: None,
        same_as: None,
    }
}

fn tracked(same_as: u32) -> Expect {
    Expect::Forward {
        new_flow: false,
        inner: None,
        same_as: Some(same_as),
    }
}

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, n)
}

/// Rewrites the IPv4 header of `packet` with etherparse (fresh checksum).
fn with_header(packet: &[u8], f: impl FnOnce(&mut Ipv4Header)) -> Vec<u8> {
    let (mut h, rest) = Ipv4Header::from_slice(packet).expect("valid IPv4");
    f(&mut h);
    let mut out = Vec::new();
    h.write(&mut out).expect("writes");
    out.extend_from_slice(rest);
    out
}

fn encap_expected(inner: &[u8], backend: Ipv4Addr) -> Vec<u8> {
    let (ih, _) = Ipv4Header::from_slice(inner).expect("valid inner");
    let mut h = Ipv4Header::new(
        (inner.len() + 8) as u16,
        64,
        IpNumber::UDP,
        LB_IP.octets(),
        backend.octets(),
    )
    .expect("fits");
    h.identification = ih.identification;
    h.dont_fragment = ih.dont_fragment;
    h.dscp = ih.dscp;
    h.ecn = ih.ecn;
    let udp = UdpHeader::with_ipv4_checksum(1337, 1337, &h, inner).expect("fits");
    let mut out = Vec::new();
    h.write(&mut out).expect("writes");
    udp.write(&mut out).expect("writes");
    out.extend_from_slice(inner);
    out
}

fn icmp_expected(inner: &[u8], mtu: u16) -> Vec<u8> {
    let (ih, _) = Ipv4Header::from_slice(inner).expect("valid inner");
    let quote = &inner[..ih.header_len() + 8];
    let mut h = Ipv4Header::new(
        (8 + quote.len()) as u16,
        64,
        IpNumber::ICMP,
        LB_IP.octets(),
        ih.source,
    )
    .expect("fits");
    h.dont_fragment = false;
    h.dscp = IpDscp::try_new(0xc0 >> 2).expect("valid DSCP");
    let t = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    });
    let icmp = Icmpv4Header::with_checksum(t, quote);
    let mut out = Vec::new();
    h.write(&mut out).expect("writes");
    icmp.write(&mut out).expect("writes");
    out.extend_from_slice(quote);
    out
}

fn dsr_expected(frame: &[u8], mac: lb_core::MacAddr) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: LB_MAC.0,
        destination: mac.0,
        ether_type: EtherType::IPV4,
    }
    .write(&mut out)
    .expect("writes");
    out.extend_from_slice(&frame[14..]);
    out
}

struct GenTable {
    file: &'static str,
    description: &'static str,
    provision: Provision,
    provision_toml: String,
    cases: Vec<GenCase>,
}

fn provision_toml(p: &Provision) -> String {
    let mut s = String::from("[provision]\n");
    let framing = match p.framing {
        Framing::Ipv4 => "ipv4",
        Framing::Ethernet => "ethernet",
        Framing::Ipv4Head => "ipv4_head",
    };
    let mode = match p.mode {
        ForwardMode::UdpEncap => "udp_encap",
        ForwardMode::Dsr => "dsr",
        ForwardMode::DsrKernel => "dsr-kernel",
    };
    let hash = match p.hash_mode {
        HashMode::FiveTuple => "five_tuple",
        HashMode::SrcIpPort => "src_ip_port",
    };
    let _ = writeln!(
        s,
        "framing = \"{framing}\"\nmode = \"{mode}\"\nmtu = {}\nclamp_mss = {}\nhash_mode = \"{hash}\"",
        p.mtu, p.clamp_mss
    );
    s.push_str("backends = [\n");
    for b in &p.backends {
        let state = match b.state {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Down => "down",
        };
        let _ = writeln!(
            s,
            "  {{ name = \"{}\", addr = \"{}\", mac = \"{}\", weight = {}, state = \"{state}\" }},",
            b.spec_name(),
            b.addr,
            b.mac,
            b.weight
        );
    }
    s.push_str("]\n");
    s
}

trait SpecName {
    fn spec_name(&self) -> &str;
}

impl SpecName for lb_core::BackendSpec {
    fn spec_name(&self) -> &str {
        &self.name
    }
}

fn table(
    file: &'static str,
    description: &'static str,
    provision: Provision,
    cases: Vec<GenCase>,
) -> GenTable {
    let provision_toml = provision_toml(&provision);
    GenTable {
        file,
        description,
        provision,
        provision_toml,
        cases,
    }
}

fn tables() -> Vec<GenTable> {
    let h23 = |framing, mode| Provision {
        framing,
        clamp_mss: false,
        mode,
        mtu: 1500,
        hash_mode: HashMode::FiveTuple,
        backends: vec![host(2), host(3)],
    };
    let get = b"GET / HTTP/1.0\r\n\r\n";
    let mut udp_later = case(
        "the same UDP flow 31 s later: its entry expired (30 s idle), Maglev picks the same backend again",
        udp(client(3), 5353, 53, b"query"),
        new_flow(),
    );
    udp_later.at_ms = 32_000;
    let mut udp_again = case(
        "the same UDP flow 1 s later: tracked, same backend",
        udp(client(3), 5353, 53, b"query"),
        tracked(5),
    );
    udp_again.at_ms = 1_000;
    let big_df = tcp(client(20), 41000, 80, Seg::Ack, None, &[0x61; 1460]);
    let big_no_df = with_header(&udp(client(21), 6000, 53, &[0x62; 1472]), |h| {
        h.dont_fragment = false
    });
    let fits = tcp(client(22), 41001, 80, Seg::Ack, None, &[0x63; 1432]);
    let syn = tcp(client(1), 40000, 80, Seg::Syn, None, &[]);
    let mut short_tcp = syn[..30].to_vec();
    short_tcp[3] = 30;
    let short_tcp = with_header(&short_tcp, |_| {});
    let mut bad_udp = udp(client(5), 5000, 53, b"x");
    bad_udp[25] = 4; // UDP length 4 < 8
    let icmp_echo = {
        let b = etherparse::PacketBuilder::ipv4(client(6).octets(), VIP.octets(), 64)
            .icmpv4_echo_request(1, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").expect("writes");
        v
    };
    let mut v6 = syn.clone();
    v6[0] = 0x65;
    let padded = {
        let mut f = framed(&udp(client(7), 7000, 53, b"hi"));
        f.resize(60, 0);
        f
    };
    let mut arp = framed(&syn);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);

    vec![
        table(
            "01_udp_encap.toml",
            "Selection and Caplance-compatible UDP encapsulation: new flows go to a Maglev backend, tracked flows stay; the output is the whole IP packet inside UDP to <backend>:1337",
            Provision {
                backends: vec![host(2), host(3), host(4)],
                ..h23(Framing::Ipv4, ForwardMode::UdpEncap)
            },
            vec![
                case(
                    "TCP SYN (no options) from a new client: Maglev picks a backend, encapsulated",
                    syn.clone(),
                    new_flow(),
                ),
                case(
                    "same flow, ACK with a request: tracked, same backend",
                    tcp(client(1), 40000, 80, Seg::Ack, None, get),
                    tracked(1),
                ),
                case(
                    "same flow, client FIN: same backend (entry moves to the closing timeout)",
                    tcp(client(1), 40000, 80, Seg::FinAck, None, &[]),
                    tracked(1),
                ),
                case(
                    "TCP SYN from another client",
                    tcp(client(2), 40001, 80, Seg::Syn, None, &[]),
                    new_flow(),
                ),
                case(
                    "UDP datagram from a new client",
                    udp(client(3), 5353, 53, b"query"),
                    new_flow(),
                ),
                udp_again,
                udp_later,
                case(
                    "RST of an unknown flow: forwarded by Maglev, not tracked",
                    tcp(client(9), 999, 80, Seg::Rst, None, &[]),
                    new_flow(),
                ),
            ],
        ),
        table(
            "02_mss_mtu.toml",
            "MTU: the encapsulation adds 28 bytes. With clamp_mss on, SYNs get their MSS clamped to 1500 - 40 - 28 = 1432 (see docs/mtu.md for which direction that helps); a DF packet that no longer fits gets ICMP fragmentation-needed (MTU 1472); a non-DF one is forwarded and left to IP fragmentation",
            Provision {
                clamp_mss: true,
                ..h23(Framing::Ipv4, ForwardMode::UdpEncap)
            },
            vec![
                case(
                    "SYN with MSS 1460: rewritten to 1432 inside the encapsulation, TCP checksum fixed",
                    tcp(client(10), 40010, 443, Seg::Syn, Some(1460), &[]),
                    Expect::Forward {
                        new_flow: true,
                        inner: Some(tcp(client(10), 40010, 443, Seg::Syn, Some(1432), &[])),
                        same_as: None,
                    },
                ),
                case(
                    "SYN with MSS 1400: already small enough, unchanged",
                    tcp(client(11), 40011, 443, Seg::Syn, Some(1400), &[]),
                    new_flow(),
                ),
                case(
                    "1500-byte DF segment: 1528 once encapsulated, too big: ICMP frag-needed with next-hop MTU 1472 to the client",
                    big_df,
                    Expect::FragNeeded(1472),
                ),
                case(
                    "1500-byte UDP datagram without DF: forwarded, the outer packet (1528 bytes, DF clear) is left to IP fragmentation",
                    big_no_df,
                    new_flow(),
                ),
                case(
                    "1472-byte DF segment: exactly 1500 once encapsulated, forwarded",
                    fits,
                    new_flow(),
                ),
            ],
        ),
        table(
            "03_drops.toml",
            "Drops, one counter per reason: malformed, truncated, fragments, non-TCP/UDP, not for the VIP",
            h23(Framing::Ipv4, ForwardMode::UdpEncap),
            vec![
                case(
                    "12 bytes: shorter than an IPv4 header",
                    syn[..12].to_vec(),
                    Expect::Drop("ipv4_truncated"),
                ),
                case(
                    "SYN cut at 30 bytes, total length still 40",
                    syn[..30].to_vec(),
                    Expect::Drop("ipv4_bad_total_len"),
                ),
                case(
                    "total length 30: only 10 bytes of TCP header",
                    short_tcp,
                    Expect::Drop("tcp_truncated"),
                ),
                case(
                    "first fragment (MF set)",
                    with_header(&syn, |h| h.more_fragments = true),
                    Expect::Drop("fragment"),
                ),
                case(
                    "later fragment (offset 1480)",
                    with_header(&syn, |h| {
                        h.fragment_offset = IpFragOffset::try_new(185).expect("valid")
                    }),
                    Expect::Drop("fragment"),
                ),
                case(
                    "ICMP echo request to the VIP",
                    icmp_echo,
                    Expect::Drop("not_tcp_udp"),
                ),
                case(
                    "TCP SYN to 10.0.0.99, not a VIP",
                    tcp_to(
                        client(1),
                        Ipv4Addr::new(10, 0, 0, 99),
                        40000,
                        80,
                        Seg::Syn,
                        None,
                        &[],
                    ),
                    Expect::Drop("not_vip"),
                ),
                case("version 6 in an IPv4 header", v6, Expect::Drop("not_ipv4")),
                case(
                    "UDP length field 4",
                    bad_udp,
                    Expect::Drop("udp_bad_length"),
                ),
            ],
        ),
        table(
            "04_dsr.toml",
            "L2 direct server return from an AF_PACKET intake: the frame leaves with the backend's MAC as destination and the balancer's as source, nothing else changes (no MSS clamp: no overhead)",
            h23(Framing::Ethernet, ForwardMode::Dsr),
            vec![
                case(
                    "SYN frame with MSS 1460: MACs rewritten, MSS untouched",
                    framed(&tcp(client(1), 40000, 80, Seg::Syn, Some(1460), &[])),
                    new_flow(),
                ),
                case(
                    "same flow, ACK: same backend",
                    framed(&tcp(client(1), 40000, 80, Seg::Ack, None, get)),
                    tracked(1),
                ),
                case(
                    "UDP frame",
                    framed(&udp(client(3), 5353, 53, b"query")),
                    new_flow(),
                ),
                case(
                    "UDP frame padded to 60 bytes: padding kept, not counted in bytes",
                    padded,
                    new_flow(),
                ),
                case("ARP frame", arp, Expect::Drop("not_ipv4")),
                case(
                    "10-byte frame",
                    framed(&syn)[..10].to_vec(),
                    Expect::Drop("ethernet_truncated"),
                ),
            ],
        ),
        table(
            "05_src_ip_port.toml",
            "Caplance's hash key (source ip:port only): flows from one client socket to several ports share a backend; draining backends take no new flows",
            Provision {
                hash_mode: HashMode::SrcIpPort,
                backends: vec![host(2), host(3), host(4).with_state(BackendState::Draining)],
                ..h23(Framing::Ipv4, ForwardMode::UdpEncap)
            },
            vec![
                case(
                    "SYN 10.1.0.30:50000 to port 80",
                    tcp(client(30), 50000, 80, Seg::Syn, None, &[]),
                    new_flow(),
                ),
                case(
                    "SYN from the same ip:port to port 443: another flow, same backend",
                    tcp(client(30), 50000, 443, Seg::Syn, None, &[]),
                    Expect::Forward {
                        new_flow: true,
                        inner: None,
                        same_as: Some(1),
                    },
                ),
                case(
                    "UDP from the same ip:port: same backend",
                    udp(client(30), 50000, 53, b"q"),
                    Expect::Forward {
                        new_flow: true,
                        inner: None,
                        same_as: Some(1),
                    },
                ),
            ],
        ),
        table(
            "06_no_backend.toml",
            "No active backend: every backend is draining or down, new flows are dropped",
            Provision {
                backends: vec![
                    host(2).with_state(BackendState::Draining),
                    host(3).with_state(BackendState::Down),
                ],
                ..h23(Framing::Ipv4, ForwardMode::UdpEncap)
            },
            vec![case(
                "SYN with no active backend",
                syn.clone(),
                Expect::Drop("no_backend"),
            )],
        ),
    ]
}

#[test]
#[ignore = "writes lb-core/fixtures; run on purpose (see the module doc)"]
fn write_fixture_files() {
    assert!(
        std::env::var("LB_WRITE_FIXTURES").is_ok(),
        "set LB_WRITE_FIXTURES=1 to overwrite lb-core/fixtures"
    );
    let dir = crate::fixtures::fixture_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut id = 0;
    for t in tables() {
        let mut state = provision(&t.provision);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Generated by lb-core/tests/suite/gen_fixtures.rs, then reviewed.\ndescription = \"{}\"\n",
            t.description
        );
        s.push_str(&t.provision_toml);
        let mut backends_of: BTreeMap<u32, String> = BTreeMap::new();
        let mut forwarded = 0u64;
        let mut frag_needed = 0u64;
        let mut drops: BTreeMap<&str, u64> = BTreeMap::new();
        let mut per_backend: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let first_id = id + 1;
        for c in &t.cases {
            id += 1;
            let action = decide(&mut state, Nanos::from_millis(c.at_ms), &c.input);
            let _ = writeln!(s, "\n[[case]]\nid = {id}\ndescription = \"{}\"", c.desc);
            if c.at_ms != 0 {
                let _ = writeln!(s, "at_ms = {}", c.at_ms);
            }
            let _ = writeln!(s, "input = '''\n{}'''", to_hex(&c.input) + "\n");
            let ip_of = |input: &[u8]| match t.provision.framing {
                Framing::Ipv4 | Framing::Ipv4Head => input.to_vec(),
                Framing::Ethernet => {
                    let total = u16::from_be_bytes([input[16], input[17]]) as usize;
                    input[14..14 + total].to_vec()
                }
            };
            let output = match (&c.expect, action) {
                (
                    Expect::Forward {
                        new_flow,
                        inner,
                        same_as,
                    },
                    Action::Forward {
                        backend,
                        addr,
                        mac,
                        new_flow: got_new,
                    },
                ) => {
                    assert_eq!(*new_flow, got_new, "case {id}: new_flow");
                    let name = state.backend(backend).expect("live").spec.name.clone();
                    if let Some(other) = same_as {
                        assert_eq!(
                            backends_of.get(&(first_id + other - 1)),
                            Some(&name),
                            "case {id}: same backend as case {other}"
                        );
                    }
                    backends_of.insert(id, name.clone());
                    let _ = writeln!(
                        s,
                        "action = \"forward\"\nbackend = \"{name}\"\nnew_flow = {new_flow}"
                    );
                    forwarded += 1;
                    let ip = ip_of(&c.input);
                    let e = per_backend.entry(name).or_default();
                    e.0 += 1;
                    e.1 += ip.len() as u64;
                    e.2 += u64::from(*new_flow);
                    match t.provision.mode {
                        ForwardMode::UdpEncap => {
                            encap_expected(inner.as_deref().unwrap_or(&ip), addr)
                        }
                        ForwardMode::Dsr => dsr_expected(&c.input, mac),
                        // The kernel forwards the packet itself: lb emits nothing.
                        ForwardMode::DsrKernel => Vec::new(),
                    }
                }
                (Expect::Drop(reason), Action::Drop(got)) => {
                    assert_eq!(*reason, got.name(), "case {id}: reason");
                    let _ = writeln!(s, "action = \"drop\"\nreason = \"{reason}\"");
                    *drops.entry(reason).or_default() += 1;
                    Vec::new()
                }
                (Expect::FragNeeded(mtu), Action::FragNeeded { next_hop_mtu }) => {
                    assert_eq!(*mtu, next_hop_mtu, "case {id}");
                    let _ = writeln!(s, "action = \"frag_needed\"\nnext_hop_mtu = {mtu}");
                    frag_needed += 1;
                    icmp_expected(&ip_of(&c.input), *mtu)
                }
                (_, other) => panic!(
                    "case {id} ({}): lb decided {other:?}, not what the case expects",
                    c.desc
                ),
            };
            if !output.is_empty() {
                let _ = writeln!(s, "output = '''\n{}'''", to_hex(&output) + "\n");
            }
        }
        let _ = writeln!(
            s,
            "\n[counters]\nforwarded = {forwarded}\nfrag_needed = {frag_needed}"
        );
        let drops: Vec<String> = drops.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = writeln!(s, "drops = {{ {} }}", drops.join(", "));
        for (name, (packets, bytes, flows)) in per_backend {
            let _ = writeln!(
                s,
                "backends.{name} = {{ packets = {packets}, bytes = {bytes}, flows = {flows} }}"
            );
        }
        std::fs::write(dir.join(t.file), s).expect("write fixture");
    }
}
