//! The seed's bug as hand-built frames (seeds/000): Caplance reads VIP traffic with a packet
//! socket, so h1's own kernel answers h3's SYN with a RST while the SYN also goes, UDP
//! encapsulated, to h2, whose SYN-ACK (source: the VIP) reaches h3 after the RST; h3's kernel,
//! its socket gone, answers that SYN-ACK with a RST, which h1 forwards to h2 too.
//!
//! Everything that varies between runs is a parameter, so tests can show the trace does not.

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder, TcpHeader, TcpOptionElement};
use lab::capture::{CapturePoint, Frame, PacketType};
use lab::trace::NameMap;

pub const H1: [u8; 4] = [10, 0, 0, 1];
pub const H2: [u8; 4] = [10, 0, 0, 2];
pub const H3: [u8; 4] = [10, 0, 0, 3];
pub const VIP: [u8; 4] = [10, 0, 0, 50];
const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const MAC3: [u8; 6] = [0x02, 0, 0, 0, 0, 3];

/// What differs from run to run on a real machine.
#[derive(Debug, Clone)]
pub struct Run {
    pub client_port: u16,
    pub encap_port: u16,
    pub isn_client: u32,
    pub isn_backend: u32,
    pub ip_id: u16,
    pub tsval: u32,
    pub start: Duration,
}

/// The post's numbers.
pub const POST: Run = Run {
    client_port: 37388,
    encap_port: 45123,
    isn_client: 3_009_015_791,
    isn_backend: 2_629_426_318,
    ip_id: 0x4a1b,
    tsval: 2_263_173_829,
    start: Duration::from_secs(1_561_669_905),
};

/// Another run: every volatile value different.
pub const OTHER: Run = Run {
    client_port: 51000,
    encap_port: 60001,
    isn_client: 17,
    isn_backend: 4_294_967_290,
    ip_id: 7,
    tsval: 99,
    start: Duration::from_secs(1_700_000_000),
};

/// The seed topology's names: h1..h3 and the VIP.
pub fn names() -> NameMap {
    NameMap::new()
        .host("h1", Ipv4Addr::from(H1))
        .host("h2", Ipv4Addr::from(H2))
        .host("h3", Ipv4Addr::from(H3))
        .vip(Ipv4Addr::from(VIP))
}

#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck(u32),
    RstAck(u32),
    Rst,
}

/// An IPv4 TCP packet as Linux would send it (SYNs with Linux's option set).
fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    ports: (u16, u16),
    seq: u32,
    flags: Flags,
    run: &Run,
) -> Vec<u8> {
    let mut h = TcpHeader::new(ports.0, ports.1, seq, 64240);
    match flags {
        Flags::Syn => h.syn = true,
        Flags::SynAck(ack) => (h.syn, h.ack, h.acknowledgment_number) = (true, true, ack),
        Flags::RstAck(ack) => {
            (h.rst, h.ack, h.acknowledgment_number, h.window_size) = (true, true, ack, 0)
        }
        Flags::Rst => (h.rst, h.window_size) = (true, 0),
    }
    if h.syn {
        h.set_options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(run.tsval, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .expect("options");
    }
    let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, src, dst).expect("ip");
    ip.identification = id;
    ip.dont_fragment = true;
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
        .tcp_header(h)
        .write(&mut out, &[])
        .expect("build");
    out
}

/// `packet` in an Ethernet frame.
fn eth(src: [u8; 6], dst: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + packet.len());
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// `inner` encapsulated from h1 to h2's agent, as Caplance forwards.
fn encap(inner: &[u8], id: u16, run: &Run) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber::UDP, H1, H2).expect("ip");
    ip.identification = id;
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC1, MAC2)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(run.encap_port, 1337)
        .write(&mut out, inner)
        .expect("build");
    out
}

fn frame(run: &Run, at_us: u64, kind: PacketType, iface: &str, data: Vec<u8>) -> Frame {
    // Loopback frames carry an all-zero Ethernet header, as the kernel shows them.
    Frame::ethernet(run.start + Duration::from_micros(at_us), kind, iface, data)
}

/// Capture points h3 (h3-eth0), h1 (h1-eth0) and h2 (any: h2-eth0 and lo), in that order.
pub fn seed(run: &Run) -> Vec<CapturePoint> {
    use PacketType::{Host, Outgoing};
    let (c, id) = (run.client_port, run.ip_id);
    let syn = tcp(H3, VIP, id, (c, 8080), run.isn_client, Flags::Syn, run);
    // h1's kernel: no socket on the VIP, so RFC 793's reset: seq 0, ack = SYN + 1.
    let rst_ack = tcp(
        VIP,
        H3,
        0,
        (8080, c),
        0,
        Flags::RstAck(run.isn_client.wrapping_add(1)),
        run,
    );
    let syn_ack = tcp(
        VIP,
        H3,
        0,
        (8080, c),
        run.isn_backend,
        Flags::SynAck(run.isn_client.wrapping_add(1)),
        run,
    );
    // h3's kernel: the connection is gone, so the SYN-ACK gets a reset with seq = its ack.
    let rst = tcp(
        H3,
        VIP,
        0,
        (c, 8080),
        run.isn_client.wrapping_add(1),
        Flags::Rst,
        run,
    );
    let fwd_syn = encap(&syn, id.wrapping_add(100), run);
    let fwd_rst = encap(&rst, id.wrapping_add(101), run);

    let mut h3 = CapturePoint::new("h3", Some("h3-eth0"));
    h3.frames = vec![
        frame(run, 0, Outgoing, "h3-eth0", eth(MAC3, MAC1, &syn)),
        frame(run, 120, Host, "h3-eth0", eth(MAC1, MAC3, &rst_ack)),
        frame(run, 500, Host, "h3-eth0", eth(MAC2, MAC3, &syn_ack)),
        frame(run, 520, Outgoing, "h3-eth0", eth(MAC3, MAC1, &rst)),
    ];
    let mut h1 = CapturePoint::new("h1", Some("h1-eth0"));
    h1.frames = vec![
        frame(run, 50, Host, "h1-eth0", eth(MAC3, MAC1, &syn)),
        frame(run, 80, Outgoing, "h1-eth0", eth(MAC1, MAC3, &rst_ack)),
        frame(run, 300, Outgoing, "h1-eth0", fwd_syn.clone()),
        frame(run, 560, Host, "h1-eth0", eth(MAC3, MAC1, &rst)),
        frame(run, 700, Outgoing, "h1-eth0", fwd_rst.clone()),
    ];
    // The agent writes the inner packet back with a raw socket: it arrives again on lo.
    let mut h2 = CapturePoint::new("h2", None);
    h2.frames = vec![
        frame(run, 350, Host, "h2-eth0", fwd_syn),
        frame(run, 400, Host, "lo", eth([0; 6], [0; 6], &syn)),
        frame(run, 450, Outgoing, "h2-eth0", eth(MAC2, MAC3, &syn_ack)),
        frame(run, 750, Host, "h2-eth0", fwd_rst),
        frame(run, 800, Host, "lo", eth([0; 6], [0; 6], &rst)),
    ];
    vec![h3, h1, h2]
}

/// The two views the post shows side by side: h2 (any) and h3.
pub fn post_views(run: &Run) -> Vec<CapturePoint> {
    let mut points = seed(run);
    let h2 = points.remove(2);
    vec![h2, points.remove(0)]
}
