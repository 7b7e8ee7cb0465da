//! The nfnetlink_queue wire format: building requests and parsing what the kernel sends.
//!
//! Every message is a netlink header (`struct nlmsghdr`, 16 bytes, host byte order), the
//! nfnetlink header (`struct nfgenmsg`, 4 bytes: family, version 0, `res_id` = queue number in
//! network byte order) and attributes (`struct nlattr`: length and type in host byte order,
//! value padded to 4 bytes). The message type is `NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_*`.
//! Values inside the queue's attributes (ids, verdicts, marks, ifindexes, flags) are big-endian.
//! Numbers are those of `include/uapi/linux/netfilter/nfnetlink_queue.h`.
//!
//! Guarantee: [`Messages`] and [`parse_packet`] never panic and never read out of bounds,
//! whatever the bytes; a malformed message yields a [`ParseError`] and parsing continues with
//! the next message when the framing allows it.

use std::fmt;

/// `NFNL_SUBSYS_QUEUE`.
pub const NFNL_SUBSYS_QUEUE: u8 = 3;
/// Message from kernel to user space: a queued packet.
pub const NFQNL_MSG_PACKET: u8 = 0;
/// Verdict on one packet id.
pub const NFQNL_MSG_VERDICT: u8 = 1;
/// Queue configuration (bind, copy mode, length, flags).
pub const NFQNL_MSG_CONFIG: u8 = 2;
/// Verdict on every pending packet id up to and including the given one.
pub const NFQNL_MSG_VERDICT_BATCH: u8 = 3;

/// Netlink control message types and flags (`include/uapi/linux/netlink.h`).
pub const NLMSG_NOOP: u16 = 1;
/// Error or acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// End of a dump.
pub const NLMSG_DONE: u16 = 3;
/// A request (every message user space sends).
pub const NLM_F_REQUEST: u16 = 0x1;
/// Ask for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// Attribute type bits (the top two are `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`).
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `enum nfqnl_attr_type`.
pub mod attr {
    /// `struct nfqnl_msg_packet_hdr`: id (be32), hw_protocol (be16), hook (u8), packed.
    pub const PACKET_HDR: u16 = 1;
    /// `struct nfqnl_msg_verdict_hdr`: verdict (be32), id (be32). Not nested.
    pub const VERDICT_HDR: u16 = 2;
    /// be32 skb mark.
    pub const MARK: u16 = 3;
    /// `struct nfqnl_msg_packet_timestamp`.
    pub const TIMESTAMP: u16 = 4;
    /// be32 input ifindex.
    pub const IFINDEX_INDEV: u16 = 5;
    /// be32 output ifindex.
    pub const IFINDEX_OUTDEV: u16 = 6;
    /// be32 physical input ifindex (bridge).
    pub const IFINDEX_PHYSINDEV: u16 = 7;
    /// be32 physical output ifindex (bridge).
    pub const IFINDEX_PHYSOUTDEV: u16 = 8;
    /// `struct nfqnl_msg_packet_hw`: addrlen (be16), pad, `addr[8]`.
    pub const HWADDR: u16 = 9;
    /// The packet from the network header on, up to the copy range.
    pub const PAYLOAD: u16 = 10;
    /// Conntrack entry (nested, `nf_conntrack_netlink.h`).
    pub const CT: u16 = 11;
    /// be32 `enum ip_conntrack_info`.
    pub const CT_INFO: u16 = 12;
    /// be32 original length, present when the payload was cut to the copy range.
    pub const CAP_LEN: u16 = 13;
    /// be32 `NFQA_SKB_*` flags.
    pub const SKB_INFO: u16 = 14;
    /// Expectation (verdict only).
    pub const EXP: u16 = 15;
    /// be32 socket uid.
    pub const UID: u16 = 16;
    /// be32 socket gid.
    pub const GID: u16 = 17;
    /// Security context string.
    pub const SECCTX: u16 = 18;
}

/// `enum nfqnl_attr_config`.
pub mod cfg {
    /// `struct nfqnl_msg_config_cmd`: command (u8), pad (u8), pf (be16).
    pub const CMD: u16 = 1;
    /// `struct nfqnl_msg_config_params`: copy_range (be32), copy_mode (u8), packed (5 bytes).
    pub const PARAMS: u16 = 2;
    /// be32 maximum number of packets waiting for a verdict.
    pub const QUEUE_MAXLEN: u16 = 3;
    /// be32 which flags to change; required whenever `FLAGS` is sent.
    pub const MASK: u16 = 4;
    /// be32 flag values.
    pub const FLAGS: u16 = 5;
    /// `NFQNL_CFG_CMD_BIND`.
    pub const CMD_BIND: u8 = 1;
    /// `NFQNL_CFG_CMD_UNBIND`.
    pub const CMD_UNBIND: u8 = 2;
    /// `NFQNL_COPY_PACKET`.
    pub const COPY_PACKET: u8 = 2;
    /// `NFQA_CFG_F_FAIL_OPEN`: accept packets instead of dropping them when the queue is full.
    pub const F_FAIL_OPEN: u32 = 1 << 0;
    /// `NFQA_CFG_F_CONNTRACK`: include the conntrack entry.
    pub const F_CONNTRACK: u32 = 1 << 1;
    /// `NFQA_CFG_F_GSO`: deliver GSO packets whole instead of segmenting them.
    pub const F_GSO: u32 = 1 << 2;
}

/// `NFQA_SKB_CSUMNOTREADY`: checksum not computed yet (offload); it is correct on the wire.
pub const SKB_CSUMNOTREADY: u32 = 1 << 0;
/// `NFQA_SKB_GSO`: the packet is a GSO super-packet (bigger than the MTU).
pub const SKB_GSO: u32 = 1 << 1;
/// `NFQA_SKB_CSUM_NOTVERIFIED`: checksum not verified by the device.
pub const SKB_CSUM_NOTVERIFIED: u32 = 1 << 2;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink message type of an nfqueue message.
pub const fn msg_type(t: u8) -> u16 {
    ((NFNL_SUBSYS_QUEUE as u16) << 8) | t as u16
}

/// A request being built in place, without allocating.
#[derive(Clone)]
pub struct Request<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Request<N> {
    fn new(t: u8, flags: u16, seq: u32, queue: u16) -> Self {
        let mut r = Request {
            buf: [0; N],
            len: NLMSG_HDRLEN + NFGENMSG_LEN,
        };
        r.buf[4..6].copy_from_slice(&msg_type(t).to_ne_bytes());
        r.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        r.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel. nfgenmsg: AF_UNSPEC, NFNETLINK_V0, res_id.
        r.buf[18..20].copy_from_slice(&queue.to_be_bytes());
        r.set_len(r.len);
        r
    }

    fn set_len(&mut self, total: usize) {
        self.buf[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, value: &[u8]) {
        let start = self.len;
        let nla_len = NLA_HDRLEN + value.len();
        self.buf[start..start + 2].copy_from_slice(&(nla_len as u16).to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&ty.to_ne_bytes());
        self.buf[start + 4..start + nla_len].copy_from_slice(value);
        self.len = start + align4(nla_len);
        self.set_len(self.len);
    }

    /// The message bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A verdict number as the kernel sees it (`NF_DROP`, `NF_ACCEPT`, ...), queue in the top bits.
pub fn verdict_hdr(verdict: u32, id: u32) -> [u8; 8] {
    let mut v = [0; 8];
    v[..4].copy_from_slice(&verdict.to_be_bytes());
    v[4..].copy_from_slice(&id.to_be_bytes());
    v
}

/// `NFQNL_MSG_VERDICT` (`batch` false) or `NFQNL_MSG_VERDICT_BATCH` (`batch` true) for `id`,
/// with an optional mark. No acknowledgement is requested: errors arrive later as
/// `NLMSG_ERROR` messages among the packets.
pub fn verdict_request(
    queue: u16,
    id: u32,
    verdict: u32,
    mark: Option<u32>,
    batch: bool,
    seq: u32,
) -> Request<40> {
    let t = if batch {
        NFQNL_MSG_VERDICT_BATCH
    } else {
        NFQNL_MSG_VERDICT
    };
    let mut r = Request::new(t, NLM_F_REQUEST, seq, queue);
    r.attr(attr::VERDICT_HDR, &verdict_hdr(verdict, id));
    if let Some(m) = mark {
        r.attr(attr::MARK, &m.to_be_bytes());
    }
    r
}

/// The head of a verdict carrying a replacement payload: everything up to and including the
/// `NFQA_PAYLOAD` attribute header; the payload itself follows it on the wire (no copy).
pub fn verdict_payload_head(
    queue: u16,
    id: u32,
    verdict: u32,
    mark: Option<u32>,
    payload_len: usize,
    seq: u32,
) -> Option<Request<44>> {
    let mut r = Request::new(NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, queue);
    r.attr(attr::VERDICT_HDR, &verdict_hdr(verdict, id));
    if let Some(m) = mark {
        r.attr(attr::MARK, &m.to_be_bytes());
    }
    let nla_len = u16::try_from(NLA_HDRLEN + payload_len).ok()?;
    let start = r.len;
    r.buf[start..start + 2].copy_from_slice(&nla_len.to_ne_bytes());
    r.buf[start + 2..start + 4].copy_from_slice(&attr::PAYLOAD.to_ne_bytes());
    r.len = start + NLA_HDRLEN;
    r.set_len(r.len + payload_len);
    Some(r)
}

/// What [`config_request`] sets on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigParams {
    /// Send `NFQNL_CFG_CMD_BIND` first.
    pub bind: bool,
    /// Bytes of each packet copied to user space (`NFQNL_COPY_PACKET`).
    pub copy_range: u32,
    /// `NFQA_CFG_QUEUE_MAXLEN`.
    pub queue_len: u32,
    /// `NFQA_CFG_FLAGS` values.
    pub flags: u32,
    /// `NFQA_CFG_MASK`: the flags this request sets or clears.
    pub mask: u32,
}

/// One `NFQNL_MSG_CONFIG` request with `NLM_F_ACK`: bind (optional), copy mode PACKET with the
/// copy range, queue length, flags and mask. The kernel applies them in that order in one call
/// (`nfqnl_recv_config`), after checking the flags first, so an unsupported flag binds nothing.
pub fn config_request(queue: u16, p: &ConfigParams, seq: u32) -> Request<64> {
    let mut r = Request::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    if p.bind {
        // command, pad, pf (ignored by BIND since the per-family PF_BIND became a no-op).
        r.attr(cfg::CMD, &[cfg::CMD_BIND, 0, 0, 0]);
    }
    let mut params = [0u8; 5];
    params[..4].copy_from_slice(&p.copy_range.to_be_bytes());
    params[4] = cfg::COPY_PACKET;
    r.attr(cfg::PARAMS, &params);
    r.attr(cfg::QUEUE_MAXLEN, &p.queue_len.to_be_bytes());
    r.attr(cfg::FLAGS, &p.flags.to_be_bytes());
    r.attr(cfg::MASK, &p.mask.to_be_bytes());
    r
}

/// A packet the kernel queued, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Packet id: give it to [`Queue::verdict`](crate::Queue::verdict). Ids rise by one per
    /// queued packet, per queue.
    pub id: u32,
    /// Link-layer protocol (`ETH_P_IP` 0x0800, `ETH_P_IPV6` 0x86dd), host order.
    pub hw_protocol: u16,
    /// Netfilter hook (0 PREROUTING, 1 INPUT, 2 FORWARD, 3 OUTPUT, 4 POSTROUTING).
    pub hook: u8,
    /// The packet from its network header on, cut to the copy range.
    pub payload: &'a [u8],
    /// Original length when the payload was cut (`NFQA_CAP_LEN`).
    pub orig_len: Option<u32>,
    /// Input interface index.
    pub indev: Option<u32>,
    /// Output interface index.
    pub outdev: Option<u32>,
    /// skb mark (the kernel sends it only when non-zero).
    pub mark: Option<u32>,
    /// `NFQA_SKB_GSO`: a GSO super-packet, delivered whole because the queue has `gso` set.
    pub gso: bool,
    /// Source hardware address, when the link layer gave a 6-byte one.
    pub hw_addr: Option<[u8; 6]>,
    /// Queue number (`res_id`).
    pub queue: u16,
    /// Protocol family (`NFPROTO_IPV4` 2, `NFPROTO_IPV6` 10, ...).
    pub family: u8,
    /// Raw `NFQA_SKB_INFO` flags ([`SKB_CSUMNOTREADY`], [`SKB_GSO`], ...), 0 when absent.
    pub skb_info: u32,
}

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `NFQNL_MSG_PACKET`.
    Packet(Packet<'a>),
    /// `NLMSG_ERROR` with error 0: the acknowledgement of request `seq`.
    Ack {
        /// Sequence number of the acknowledged request.
        seq: u32,
    },
    /// `NLMSG_ERROR` with an error: request `seq` failed.
    Error {
        /// Sequence number of the failed request.
        seq: u32,
        /// Positive errno.
        errno: i32,
        /// Netlink type of the failed request, when the kernel echoed its header.
        request_type: Option<u16>,
    },
    /// Anything else (`NLMSG_NOOP`, `NLMSG_DONE`, other subsystems' messages on the same
    /// `NETLINK_NETFILTER` socket family): the queue ignores them.
    Other {
        /// The netlink message type.
        msg_type: u16,
        /// Sequence number of the request it answers.
        seq: u32,
        /// What follows the netlink header.
        body: &'a [u8],
    },
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer than 16 bytes left for a netlink header.
    #[error("{len} bytes left, too short for a netlink header")]
    ShortHeader {
        /// Bytes left.
        len: usize,
    },
    /// `nlmsg_len` is below the header size or beyond the datagram.
    #[error("nlmsg_len {nlmsg_len} with {available} bytes available")]
    BadLength {
        /// The header's length field.
        nlmsg_len: u32,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// A queue message without its 4-byte nfgenmsg.
    #[error("message of {len} bytes has no nfgenmsg")]
    ShortNfgenmsg {
        /// Message length.
        len: usize,
    },
    /// An attribute header whose length is below 4 or beyond the message.
    #[error("attribute at offset {offset}: nla_len {nla_len} with {available} bytes left")]
    BadAttribute {
        /// Offset in the message.
        offset: usize,
        /// The attribute's length field.
        nla_len: u16,
        /// Bytes left in the message.
        available: usize,
    },
    /// A known attribute with too short a value.
    #[error("attribute {attr}: {len} bytes, needs {need}")]
    ShortAttribute {
        /// Attribute type.
        attr: u16,
        /// Value length.
        len: usize,
        /// Minimum length.
        need: usize,
    },
    /// A packet message without `NFQA_PACKET_HDR`.
    #[error("packet message without NFQA_PACKET_HDR")]
    MissingPacketHeader,
    /// An `NLMSG_ERROR` message without its error code.
    #[error("NLMSG_ERROR of {len} bytes has no error code")]
    ShortError {
        /// Message length.
        len: usize,
    },
}

fn u16_ne(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}
fn u32_ne(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}
fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The netlink messages of one datagram, in order.
///
/// A message whose framing is broken (`nlmsg_len` impossible) ends the iteration after its
/// error, since the next message cannot be found; other errors affect only their message.
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Iterates over the messages in `datagram`.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        if rest.len() < NLMSG_HDRLEN {
            self.rest = &[];
            return Some(Err(ParseError::ShortHeader { len: rest.len() }));
        }
        let nlmsg_len = u32_ne(&rest[0..4]);
        let len = nlmsg_len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.rest = &[];
            return Some(Err(ParseError::BadLength {
                nlmsg_len,
                available: rest.len(),
            }));
        }
        self.rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(parse_message(&rest[..len]))
    }
}

/// Parses one framed netlink message (`msg.len()` is its `nlmsg_len`).
fn parse_message(msg: &[u8]) -> Result<Message<'_>, ParseError> {
    let ty = u16_ne(&msg[4..6]);
    let seq = u32_ne(&msg[8..12]);
    let body = &msg[NLMSG_HDRLEN..];
    if ty == NLMSG_ERROR {
        if body.len() < 4 {
            return Err(ParseError::ShortError { len: msg.len() });
        }
        let error = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
        if error == 0 {
            return Ok(Message::Ack { seq });
        }
        let request_type = body.get(8..10).map(u16_ne);
        return Ok(Message::Error {
            seq,
            errno: error.saturating_neg(),
            request_type,
        });
    }
    if ty == msg_type(NFQNL_MSG_PACKET) {
        return parse_packet(msg).map(Message::Packet);
    }
    Ok(Message::Other {
        msg_type: ty,
        seq,
        body,
    })
}

/// Parses an `NFQNL_MSG_PACKET` message (netlink header included). Unknown attributes are
/// skipped; a known one that is too short, or broken attribute framing, fails the message.
pub fn parse_packet(msg: &[u8]) -> Result<Packet<'_>, ParseError> {
    let Some(nfgen) = msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + NFGENMSG_LEN) else {
        return Err(ParseError::ShortNfgenmsg { len: msg.len() });
    };
    let mut p = Packet {
        id: 0,
        hw_protocol: 0,
        hook: 0,
        payload: &[],
        orig_len: None,
        indev: None,
        outdev: None,
        mark: None,
        gso: false,
        hw_addr: None,
        queue: u16::from_be_bytes([nfgen[2], nfgen[3]]),
        family: nfgen[0],
        skb_info: 0,
    };
    let mut have_hdr = false;
    let mut off = NLMSG_HDRLEN + NFGENMSG_LEN;
    while off < msg.len() {
        let available = msg.len() - off;
        if available < NLA_HDRLEN {
            return Err(ParseError::BadAttribute {
                offset: off,
                nla_len: 0,
                available,
            });
        }
        let nla_len = u16_ne(&msg[off..off + 2]);
        let ty = u16_ne(&msg[off + 2..off + 4]) & NLA_TYPE_MASK;
        if (nla_len as usize) < NLA_HDRLEN || nla_len as usize > available {
            return Err(ParseError::BadAttribute {
                offset: off,
                nla_len,
                available,
            });
        }
        let value = &msg[off + NLA_HDRLEN..off + nla_len as usize];
        let need = |n: usize| {
            if value.len() < n {
                Err(ParseError::ShortAttribute {
                    attr: ty,
                    len: value.len(),
                    need: n,
                })
            } else {
                Ok(())
            }
        };
        match ty {
            attr::PACKET_HDR => {
                need(7)?;
                p.id = u32_be(&value[0..4]);
                p.hw_protocol = u16::from_be_bytes([value[4], value[5]]);
                p.hook = value[6];
                have_hdr = true;
            }
            attr::PAYLOAD => p.payload = value,
            attr::MARK => {
                need(4)?;
                p.mark = Some(u32_be(value));
            }
            attr::IFINDEX_INDEV => {
                need(4)?;
                p.indev = Some(u32_be(value));
            }
            attr::IFINDEX_OUTDEV => {
                need(4)?;
                p.outdev = Some(u32_be(value));
            }
            attr::CAP_LEN => {
                need(4)?;
                p.orig_len = Some(u32_be(value));
            }
            attr::SKB_INFO => {
                need(4)?;
                p.skb_info = u32_be(value);
                p.gso = p.skb_info & SKB_GSO != 0;
            }
            attr::HWADDR => {
                need(12)?;
                let addrlen = u16::from_be_bytes([value[0], value[1]]);
                p.hw_addr = (addrlen == 6).then(|| {
                    let mut a = [0; 6];
                    a.copy_from_slice(&value[4..10]);
                    a
                });
            }
            _ => {}
        }
        off += align4(nla_len as usize);
    }
    if !have_hdr {
        return Err(ParseError::MissingPacketHeader);
    }
    Ok(p)
}

impl fmt::Display for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queue {} id {} hook {} proto {:#06x} len {}",
            self.queue,
            self.id,
            self.hook,
            self.hw_protocol,
            self.payload.len()
        )
    }
}

// Fixtures are little-endian (netlink headers are in host order).
#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    /// `verdict_request(5, 0x01020304, NF_ACCEPT, None, false, 9)`, computed by hand:
    /// nlmsghdr {len 32, type 0x0301, flags REQUEST, seq 9, pid 0}, nfgenmsg {AF_UNSPEC, v0,
    /// res_id 5 big-endian}, nlattr {len 12, type VERDICT_HDR}, verdict 1 and id, big-endian.
    #[rustfmt::skip]
    static VERDICT_BYTES: [u8; 32] = [
        32, 0, 0, 0,   0x01, 0x03,   0x01, 0x00,   9, 0, 0, 0,   0, 0, 0, 0,
        0, 0, 0x00, 0x05,
        12, 0, 2, 0,   0, 0, 0, 1,   1, 2, 3, 4,
    ];

    /// `verdict_request(0x1234, 77, NF_DROP, Some(0xdeadbeef), true, 0)`.
    #[rustfmt::skip]
    static BATCH_BYTES: [u8; 40] = [
        40, 0, 0, 0,   0x03, 0x03,   0x01, 0x00,   0, 0, 0, 0,   0, 0, 0, 0,
        0, 0, 0x12, 0x34,
        12, 0, 2, 0,   0, 0, 0, 0,   0, 0, 0, 77,
        8, 0, 3, 0,    0xde, 0xad, 0xbe, 0xef,
    ];

    /// `config_request(2, {bind, copy_range 0xffff, queue_len 1024, flags FAIL_OPEN|GSO, mask
    /// FAIL_OPEN|CONNTRACK|GSO}, 1)`: CMD {BIND, pad, pf 0}; PARAMS is 5 bytes (nla_len 9) and
    /// padded to 8; MAXLEN, FLAGS, MASK big-endian.
    #[rustfmt::skip]
    static CONFIG_BYTES: [u8; 64] = [
        64, 0, 0, 0,   0x02, 0x03,   0x05, 0x00,   1, 0, 0, 0,   0, 0, 0, 0,
        0, 0, 0x00, 0x02,
        8, 0, 1, 0,    1, 0, 0, 0,
        9, 0, 2, 0,    0, 0, 0xff, 0xff,   2, 0, 0, 0,
        8, 0, 3, 0,    0, 0, 0x04, 0x00,
        8, 0, 5, 0,    0, 0, 0, 5,
        8, 0, 4, 0,    0, 0, 0, 7,
    ];

    #[test]
    fn emit_verdict() {
        let r = verdict_request(5, 0x0102_0304, 1, None, false, 9);
        assert_eq!(r.bytes(), &VERDICT_BYTES[..]);
    }

    #[test]
    fn emit_batch_verdict_with_mark() {
        let r = verdict_request(0x1234, 77, 0, Some(0xdead_beef), true, 0);
        assert_eq!(r.bytes(), &BATCH_BYTES[..]);
    }

    #[test]
    fn emit_config() {
        let p = ConfigParams {
            bind: true,
            copy_range: 0xffff,
            queue_len: 1024,
            flags: cfg::F_FAIL_OPEN | cfg::F_GSO,
            mask: cfg::F_FAIL_OPEN | cfg::F_CONNTRACK | cfg::F_GSO,
        };
        assert_eq!(config_request(2, &p, 1).bytes(), &CONFIG_BYTES[..]);
    }

    #[test]
    fn emit_payload_verdict_head() {
        let r = verdict_payload_head(1, 3, 1, None, 5, 0).unwrap();
        // nlmsg_len covers the 5 payload bytes that follow; NFQA_PAYLOAD nla_len is 9.
        assert_eq!(u32_ne(&r.bytes()[0..4]), 32 + 4 + 5);
        assert_eq!(&r.bytes()[32..36], &[9, 0, 10, 0]);
        assert!(verdict_payload_head(1, 3, 1, None, 70_000, 0).is_none());
    }

    /// A packet message as the kernel builds it: IPv4, hook OUTPUT, outdev 7, mark, SKB_INFO
    /// GSO, a 6-byte hw address, CAP_LEN, a 5-byte payload (padded) and an unknown attribute 99.
    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 100] = [
        100, 0, 0, 0,   0x00, 0x03,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
        2, 0, 0x00, 0x04,
        11, 0, 1, 0,   0, 0, 0x01, 0x00,   0x08, 0x00,  3,  0,
        8, 0, 6, 0,    0, 0, 0, 7,
        8, 0, 3, 0,    0, 0, 0, 42,
        16, 0, 9, 0,   0, 6, 0, 0,   2, 0, 0, 0, 0, 3,  0, 0,
        8, 0, 13, 0,   0, 0, 0x05, 0xdc,
        8, 0, 14, 0,   0, 0, 0, 2,
        9, 0, 10, 0,   b'h', b'e', b'l', b'l',   b'o', 0, 0, 0,
        8, 0, 0x63, 0, 1, 2, 3, 4,
    ];

    #[test]
    fn parse() {
        let msgs: Vec<_> = messages(&PACKET_BYTES).collect();
        assert_eq!(msgs.len(), 1);
        let Ok(Message::Packet(p)) = msgs[0] else {
            panic!("{:?}", msgs[0]);
        };
        assert_eq!(
            p,
            Packet {
                id: 256,
                hw_protocol: 0x0800,
                hook: 3,
                payload: b"hello",
                orig_len: Some(1500),
                indev: None,
                outdev: Some(7),
                mark: Some(42),
                gso: true,
                hw_addr: Some([2, 0, 0, 0, 0, 3]),
                queue: 4,
                family: 2,
                skb_info: SKB_GSO,
            }
        );
    }

    #[test]
    fn parse_ack_and_error() {
        let mut d = vec![];
        // ACK of seq 1: NLMSG_ERROR, error 0, echoed header.
        d.extend_from_slice(&[36, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&0i32.to_ne_bytes());
        d.extend_from_slice(&[64, 0, 0, 0, 2, 3, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        // Error EPERM for seq 2.
        d.extend_from_slice(&[36, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        d.extend_from_slice(&[32, 0, 0, 0, 3, 3, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        let m: Vec<_> = messages(&d).collect();
        assert_eq!(
            m,
            [
                Ok(Message::Ack { seq: 1 }),
                Ok(Message::Error {
                    seq: 2,
                    errno: libc::EPERM,
                    request_type: Some(0x0303)
                })
            ]
        );
    }

    #[test]
    fn truncated() {
        // Every strict prefix of a packet message fails cleanly; none panics.
        for n in 0..PACKET_BYTES.len() {
            let m: Vec<_> = messages(&PACKET_BYTES[..n]).collect();
            assert!(m.iter().all(|r| r.is_err()), "prefix {n}: {m:?}");
        }
    }

    #[test]
    fn impossible_len() {
        let mut b = PACKET_BYTES;
        b[0] = 200;
        assert_eq!(
            messages(&b).collect::<Vec<_>>(),
            [Err(ParseError::BadLength {
                nlmsg_len: 200,
                available: 100
            })]
        );
        // An attribute claiming more than its message holds.
        let mut b = PACKET_BYTES;
        b[20] = 200;
        assert!(matches!(
            parse_packet(&b),
            Err(ParseError::BadAttribute { offset: 20, .. })
        ));
        // A short MARK.
        let mut b = PACKET_BYTES;
        b[40] = 6;
        assert_eq!(
            parse_packet(&b),
            Err(ParseError::ShortAttribute {
                attr: attr::MARK,
                len: 2,
                need: 4
            })
        );
    }

    #[test]
    fn bad_message_then_good_one_still_parses() {
        let mut d = vec![];
        // A well-framed packet message without NFQA_PACKET_HDR.
        d.extend_from_slice(&[20, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        d.extend_from_slice(&PACKET_BYTES);
        let m: Vec<_> = messages(&d).collect();
        assert_eq!(m[0], Err(ParseError::MissingPacketHeader));
        assert!(matches!(m[1], Ok(Message::Packet(Packet { id: 256, .. }))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for m in messages(&bytes) {
                if let Ok(Message::Packet(p)) = m {
                    proptest::prop_assert!(p.payload.len() <= bytes.len());
                }
            }
            let _ = parse_packet(&bytes);
        }

        #[test]
        fn mutated_packet_never_panics(i in 0usize..100, v in proptest::num::u8::ANY, cut in 0usize..=100) {
            let mut b = PACKET_BYTES;
            b[i] = v;
            for m in messages(&b[..cut]) {
                let _ = m;
            }
        }
    }
}
