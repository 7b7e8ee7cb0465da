//! The fast path's kernel side (`lb server --fast-path`): the nftables table that forwards the
//! flows of its map at the VIP interface's ingress ([`FastPathRules`], installed with `nft`),
//! and the map's elements, written and read over an nf_tables netlink socket ([`FlowMap`]).
//!
//! Elements go in batches, one `sendmsg` per received batch of packets, without waiting for an
//! answer: the kernel answers only a failed batch (the whole batch is then undone: a full map,
//! say). Removals go in a batch of their own and use `DESTROYSETELEM`, which, unlike
//! `DELSETELEM`, does not fail for an element already gone. What the kernel counted for a flow
//! is asked element by element (`GETSETELEM` with its key): a dump of the whole map would cost
//! the square of its size, as the kernel walks the hash from the start for each part.

use anyhow::{Context, Result, bail};
use lb_core::decide::fastpath::MAP_KEY_LEN;
use lb_core::rules::{FLOW_MAP, FastPathRules};
use nfqueue::wire::{Message, messages};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DESTROYSETELEM: u16 = 30;
const NFPROTO_NETDEV: u8 = 5;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

/// Installs the fast path's table (replacing one a crashed run left).
pub fn install(rules: &FastPathRules) -> Result<()> {
    nft(&rules.ruleset()).with_context(|| format!("install nftables table {}", rules.table()))
}

/// Removes the fast path's table, map and flows with it; nothing if it is already gone.
pub fn remove(rules: &FastPathRules) -> Result<()> {
    let table = rules.table();
    // `destroy` would not fail for a missing table, but nft 1.0.6 does not know it.
    match nft(&format!("delete table netdev {table}\n")) {
        Err(e) if e.to_string().contains("No such file or directory") => Ok(()),
        r => r.with_context(|| format!("remove nftables table {table}")),
    }
}

fn nft(input: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "nft is not installed (run ci/setup.sh, or apt-get install nftables)"
                )
            }
            _ => anyhow::anyhow!("run nft: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).context("write to nft")?;
    }
    let out = child.wait_with_output().context("wait for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nft: {}", err.lines().next().unwrap_or("failed").trim());
    }
    Ok(())
}

/// One element of the map as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The flow key ([`lb_core::decide::fastpath::map_key`]).
    pub key: [u8; MAP_KEY_LEN],
    /// The backend's address.
    pub addr: Ipv4Addr,
    /// Packets the kernel forwarded for it since it was added.
    pub packets: u64,
    /// Their bytes (IP packets).
    pub bytes: u64,
}

/// A netlink socket to the fast path's map, with the batch of changes not yet sent.
pub struct FlowMap {
    fd: OwnedFd,
    table: String,
    seq: u32,
    /// The messages of the next batch (without its begin and end).
    pending: Vec<u8>,
    ops: usize,
    /// The removals of the next flush, a batch of their own: `DESTROYSETELEM` cannot fail, so
    /// a refused batch of additions (a full map) never takes a removal with it.
    removals: Vec<u8>,
    /// The sequence number of the first message of the pending batch.
    batch_begin: u32,
    /// Queries waiting for [`FlowMap::send_queries`].
    queries: Vec<u8>,
    /// Queries sent and not answered yet, by sequence number.
    asked: std::collections::HashMap<u32, [u8; MAP_KEY_LEN]>,
    recv: Vec<u8>,
}

impl FlowMap {
    /// A socket for the map of `table`.
    pub fn open(table: &str) -> Result<FlowMap> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("socket(AF_NETLINK, NETLINK_NETFILTER) for the flow map");
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt with a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(FlowMap::on(fd, table))
    }

    /// A map of `table` over the socket `fd`.
    fn on(fd: OwnedFd, table: &str) -> FlowMap {
        FlowMap {
            fd,
            table: table.to_string(),
            seq: 1,
            pending: Vec::new(),
            ops: 0,
            removals: Vec::new(),
            batch_begin: 0,
            queries: Vec::new(),
            asked: Default::default(),
            recv: vec![0; 1 << 17],
        }
    }

    /// Adds `key → addr` at the next flush (an element with the same data stays as it is).
    pub fn add(&mut self, key: &[u8; MAP_KEY_LEN], addr: Ipv4Addr) {
        self.queue_element(NFT_MSG_NEWSETELEM, NLM_F_CREATE, key, Some(addr));
    }

    /// Removes `key` at the next flush, if the map has it.
    pub fn remove(&mut self, key: &[u8; MAP_KEY_LEN]) {
        self.queue_element(NFT_MSG_DESTROYSETELEM, 0, key, None);
    }

    fn queue_element(&mut self, op: u16, flags: u16, key: &[u8], data: Option<Ipv4Addr>) {
        let seq = self.next_seq();
        let b = if data.is_some() {
            if self.ops == 0 {
                // The batch's begin message takes a number of its own above this one.
                self.batch_begin = seq;
            }
            self.ops += 1;
            &mut self.pending
        } else {
            &mut self.removals
        };
        element_msg(b, op, NLM_F_REQUEST | flags, seq, &self.table, key, data);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends the pending changes: the removals as one batch, then the additions as another;
    /// returns the sequence numbers the additions span (for [`Event::Refused`]), or `None`
    /// when none were pending. The kernel handles a batch within the call: a refusal is
    /// waiting on the socket when this returns.
    pub fn flush(&mut self) -> Result<Option<(u32, u32)>> {
        if !self.removals.is_empty() {
            let body = std::mem::take(&mut self.removals);
            self.send_batch(&body).context("send flow map removals")?;
            self.removals = body;
            self.removals.clear();
        }
        if self.ops == 0 {
            return Ok(None);
        }
        let body = std::mem::take(&mut self.pending);
        let sent = self.send_batch(&body);
        self.pending = body;
        self.pending.clear();
        self.ops = 0;
        let end = sent.context("send flow map changes")?;
        Ok(Some((self.batch_begin, end)))
    }

    /// Sends `body` between a batch's begin and end messages; returns the end's number.
    fn send_batch(&mut self, body: &[u8]) -> Result<u32> {
        let mut out = Vec::with_capacity(body.len() + 40);
        for (ty, part) in [
            (NFNL_MSG_BATCH_BEGIN, None),
            (0, Some(body)),
            (NFNL_MSG_BATCH_END, None),
        ] {
            match part {
                Some(body) => out.extend_from_slice(body),
                None => {
                    let seq = self.next_seq();
                    let m = msg_start(&mut out, ty, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
                    msg_end(&mut out, m);
                }
            }
        }
        self.send(&out)?;
        Ok(self.seq)
    }

    fn send(&self, buf: &[u8]) -> Result<()> {
        // SAFETY: the kernel's netlink address (all zero but the family) and a valid buffer.
        let n = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Asks the kernel about the element of `key` (its backend and counters) at the next
    /// [`FlowMap::send_queries`]; [`FlowMap::poll`] hands over the answer.
    pub fn query(&mut self, key: &[u8; MAP_KEY_LEN]) {
        let seq = self.next_seq();
        element_msg(
            &mut self.queries,
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST,
            seq,
            &self.table,
            key,
            None,
        );
        self.asked.insert(seq, *key);
    }

    /// Sends the queries asked since the last call, in one message train.
    pub fn send_queries(&mut self) -> Result<()> {
        if self.queries.is_empty() {
            return Ok(());
        }
        let body = std::mem::take(&mut self.queries);
        let sent = self.send(&body);
        self.queries = body;
        self.queries.clear();
        sent.context("ask about flow map elements")
    }

    /// Queries without an answer yet.
    pub fn asking(&self) -> usize {
        self.asked.len()
    }

    /// Reads what waits on the socket without blocking, at most `reads` receives, and hands
    /// each answer to `on`.
    pub fn poll(&mut self, reads: usize, mut on: impl FnMut(Event)) {
        let mut elements = Vec::new();
        for _ in 0..reads {
            // SAFETY: receiving into an owned buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.recv.as_mut_ptr().cast(),
                    self.recv.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return;
            }
            for m in messages(&self.recv[..n as usize]) {
                match m {
                    Ok(Message::Error { seq, errno, .. }) => match self.asked.remove(&seq) {
                        Some(key) => on(Event::Missing(key)),
                        None => {
                            tracing::debug!(errno, seq, "the kernel refused");
                            on(Event::Refused(seq));
                        }
                    },
                    Ok(Message::Ack { seq }) => {
                        self.asked.remove(&seq);
                    }
                    Ok(Message::Other { seq, body, .. }) if self.asked.remove(&seq).is_some() => {
                        elements.clear();
                        parse_elements(body, &mut elements);
                        for e in elements.drain(..) {
                            on(Event::Element(e));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What [`FlowMap::poll`] read.
#[derive(Debug)]
pub enum Event {
    /// The answer to a query: the element, with the kernel's counts.
    Element(Element),
    /// The answer to a query: the kernel has no element for this key.
    Missing([u8; MAP_KEY_LEN]),
    /// The kernel refused the batch holding the message with this sequence number: none of
    /// its changes happened.
    Refused(u32),
}

/// One nf_tables message about one element of the flow map of `table`: its key, and its data
/// when given.
fn element_msg(
    b: &mut Vec<u8>,
    op: u16,
    flags: u16,
    seq: u32,
    table: &str,
    key: &[u8],
    data: Option<Ipv4Addr>,
) {
    let m = msg_start(
        b,
        (NFNL_SUBSYS_NFTABLES << 8) | op,
        flags,
        seq,
        NFPROTO_NETDEV,
        0,
    );
    attr_str(b, NFTA_SET_ELEM_LIST_TABLE, table);
    attr_str(b, NFTA_SET_ELEM_LIST_SET, FLOW_MAP);
    let list = nest_start(b, NFTA_SET_ELEM_LIST_ELEMENTS);
    let elem = nest_start(b, NFTA_LIST_ELEM);
    let k = nest_start(b, NFTA_SET_ELEM_KEY);
    attr(b, NFTA_DATA_VALUE, key);
    nest_end(b, k);
    if let Some(addr) = data {
        let d = nest_start(b, NFTA_SET_ELEM_DATA);
        attr(b, NFTA_DATA_VALUE, &addr.octets());
        nest_end(b, d);
    }
    nest_end(b, elem);
    nest_end(b, list);
    msg_end(b, m);
}

/// Starts a netlink message with its nfgenmsg header; returns where it starts.
fn msg_start(b: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[family, 0]);
    b.extend_from_slice(&res_id.to_be_bytes());
    start
}

fn msg_end(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u32;
    b[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().next_multiple_of(4), 0);
}

fn attr_str(b: &mut Vec<u8>, ty: u16, s: &str) {
    let mut data = s.as_bytes().to_vec();
    data.push(0);
    attr(b, ty, &data);
}

fn nest_start(b: &mut Vec<u8>, ty: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn nest_end(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// The attributes in `buf`: (type without flags, payload).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let h = buf.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let payload = &buf[at + 4..at + len];
        at += len.next_multiple_of(4);
        Some((ty, payload))
    })
}

fn attr_of(buf: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(buf).find(|(t, _)| *t == ty).map(|(_, p)| p)
}

/// The elements of one `NEWSETELEM` message, the answer to a query (body after the netlink
/// header).
fn parse_elements(body: &[u8], out: &mut Vec<Element>) {
    let Some(list) = body
        .get(4..)
        .and_then(|a| attr_of(a, NFTA_SET_ELEM_LIST_ELEMENTS))
    else {
        return;
    };
    for (ty, elem) in attrs(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let value = |outer| attr_of(elem, outer).and_then(|n| attr_of(n, NFTA_DATA_VALUE));
        let (Some(key), Some(data)) = (value(NFTA_SET_ELEM_KEY), value(NFTA_SET_ELEM_DATA)) else {
            continue;
        };
        let (Ok(key), Ok(addr)) = (
            <[u8; MAP_KEY_LEN]>::try_from(key),
            <[u8; 4]>::try_from(data),
        ) else {
            continue;
        };
        let (packets, bytes) = counter_of(elem).unwrap_or((0, 0));
        out.push(Element {
            key,
            addr: Ipv4Addr::from(addr),
            packets,
            bytes,
        });
    }
}

/// The element's counter expression: (packets, bytes).
fn counter_of(elem: &[u8]) -> Option<(u64, u64)> {
    let single = attr_of(elem, NFTA_SET_ELEM_EXPR).into_iter();
    let listed = attr_of(elem, NFTA_SET_ELEM_EXPRESSIONS)
        .into_iter()
        .flat_map(|l| {
            attrs(l)
                .filter(|(t, _)| *t == NFTA_LIST_ELEM)
                .map(|(_, e)| e)
        });
    single.chain(listed).find_map(|expr| {
        if attr_of(expr, NFTA_EXPR_NAME)? != b"counter\0" {
            return None;
        }
        let data = attr_of(expr, NFTA_EXPR_DATA)?;
        let u64_of =
            |ty| -> Option<u64> { Some(u64::from_be_bytes(attr_of(data, ty)?.try_into().ok()?)) };
        Some((u64_of(NFTA_COUNTER_PACKETS)?, u64_of(NFTA_COUNTER_BYTES)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_message_nests_key_and_data_and_parses_back() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut map = FlowMap::on(null.into(), "lb_10_0_0_50");
        let key = [7u8; MAP_KEY_LEN];
        map.add(&key, Ipv4Addr::new(10, 0, 0, 2));
        map.remove(&key);
        // Each message as (type, body after the netlink header).
        let framed = |buf| -> Vec<(u16, &[u8])> {
            messages(buf)
                .map(|m| match m {
                    Ok(Message::Other { msg_type, body, .. }) => (msg_type, body),
                    other => panic!("not an nf_tables message: {other:?}"),
                })
                .collect()
        };
        let removal = framed(&map.removals);
        assert_eq!(removal[0].0, (10 << 8) | 30);
        let msgs = framed(&map.pending);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, (10 << 8) | 12);
        // A dump answer has the same layout: the element reads back (without a counter).
        let mut out = Vec::new();
        parse_elements(msgs[0].1, &mut out);
        assert_eq!(
            out,
            [Element {
                key,
                addr: Ipv4Addr::new(10, 0, 0, 2),
                packets: 0,
                bytes: 0
            }]
        );
        let body = &msgs[0].1[4..];
        assert_eq!(
            attr_of(body, NFTA_SET_ELEM_LIST_TABLE),
            Some(&b"lb_10_0_0_50\0"[..])
        );
        assert_eq!(attr_of(body, NFTA_SET_ELEM_LIST_SET), Some(&b"flows\0"[..]));
    }
}
