//! Sockets of the data path, batched: `recvmmsg` into fixed slots, `sendmmsg` from one buffer.
//! AF_PACKET for the packet-socket intake and for L2 DSR, UDP for the encapsulation, a raw
//! IPv4 socket for ICMP errors (and for the agent's re-injection).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the given size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned by the returned OwnedFd.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Raises the socket's receive buffer (SO_RCVBUFFORCE, falling back to SO_RCVBUF).
pub fn set_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &v))
}

/// Raises the socket's send buffer (SO_SNDBUFFORCE, falling back to SO_SNDBUF).
pub fn set_sndbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &v)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &v))
}

/// Waits until `fd` is readable or `timeout` passes; returns whether it is readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Control-message space per slot: one `tpacket_auxdata`.
const CMSG_SPACE: usize = 64;

/// Fixed-size receive slots for `recvmmsg`.
pub struct RecvSlots {
    buf: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    filled: usize,
    /// Control messages, when the socket delivers PACKET_AUXDATA.
    cmsgs: Option<Vec<u64>>,
    csum_not_ready: Vec<bool>,
    /// Each packet's sender, for a UDP socket (`None` for other families).
    names: Vec<libc::sockaddr_storage>,
    sources: Vec<Option<SocketAddrV4>>,
}

impl RecvSlots {
    /// `count` slots of `slot` bytes each.
    pub fn new(count: usize, slot: usize) -> Self {
        Self {
            buf: vec![0; count * slot],
            slot,
            lens: vec![0; count],
            filled: 0,
            cmsgs: None,
            csum_not_ready: vec![false; count],
            // SAFETY: all-zero is a valid sockaddr_storage.
            names: (0..count).map(|_| unsafe { zeroed() }).collect(),
            sources: vec![None; count],
        }
    }

    /// The packets of the last receive with their senders (a UDP socket's; `None` where the
    /// socket's family is not IPv4).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddrV4>)> + '_ {
        self.packets()
            .zip(&self.sources[..self.filled])
            .map(|((p, _), src)| (p, *src))
    }

    /// Like [`RecvSlots::new`], also reading AF_PACKET's auxiliary data (see
    /// [`PacketSocket::intake`]) to learn which packets' checksums are unfinished.
    pub fn with_auxdata(count: usize, slot: usize) -> Self {
        let mut s = Self::new(count, slot);
        s.cmsgs = Some(vec![0u64; count * CMSG_SPACE / 8]);
        s
    }

    /// The packets of the last receive, each with "checksum not finished yet" (the kernel's
    /// `TP_STATUS_CSUMNOTREADY`; always false without auxdata).
    pub fn packets(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        self.lens[..self.filled]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                (
                    &self.buf[i * self.slot..i * self.slot + len.min(self.slot)],
                    self.csum_not_ready[i],
                )
            })
    }

    /// Receives what is queued on `fd` without blocking; returns the number of packets.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let count = self.lens.len();
        let mut iovs: Vec<libc::iovec> = (0..count)
            .map(|i| libc::iovec {
                iov_base: self.buf[i * self.slot..].as_mut_ptr().cast(),
                iov_len: self.slot,
            })
            .collect();
        // SAFETY: zeroed mmsghdr is a valid "no name, no control" header.
        let mut hdrs: Vec<libc::mmsghdr> = (0..count).map(|_| unsafe { zeroed() }).collect();
        let name_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (i, ((h, iov), name)) in hdrs
            .iter_mut()
            .zip(iovs.iter_mut())
            .zip(self.names.iter_mut())
            .enumerate()
        {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = name_len;
            if let Some(c) = self.cmsgs.as_mut() {
                h.msg_hdr.msg_control = c[i * CMSG_SPACE / 8..].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            }
        }
        // SAFETY: headers point into `self.buf`, `self.names` and `self.cmsgs`, which outlive
        // the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.filled = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = h.msg_len as usize;
            self.csum_not_ready[i] = self.cmsgs.is_some() && auxdata_csum_not_ready(&h.msg_hdr);
            self.sources[i] = ipv4_source(&self.names[i]);
        }
        self.filled = n;
        Ok(n)
    }
}

/// The IPv4 address and port in a received `msg_name`, if it is one.
fn ipv4_source(name: &libc::sockaddr_storage) -> Option<SocketAddrV4> {
    if i32::from(name.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the storage holds a sockaddr_in, which fits in it.
    let sin = unsafe { *(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

/// Reads `tpacket_auxdata.tp_status & TP_STATUS_CSUMNOTREADY` from a received header.
fn auxdata_csum_not_ready(m: &libc::msghdr) -> bool {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled for this header.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux = libc::CMSG_DATA(c)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned();
                return aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    false
}

/// Outgoing messages gathered in one buffer and sent with `sendmmsg`.
#[derive(Default)]
pub struct SendBatch {
    /// The bytes of every queued message.
    pub buf: Vec<u8>,
    msgs: Vec<(Range<usize>, Option<SocketAddrV4>)>,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    /// Messages the kernel took.
    pub sent: usize,
    /// Messages refused (ENOBUFS, EHOSTUNREACH, …); the last error is logged.
    pub failed: usize,
}

impl SendBatch {
    /// Queued messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Records that `buf[start..]` is one message for `dest` (None: the socket's bound peer).
    pub fn commit(&mut self, start: usize, dest: Option<SocketAddrV4>) {
        self.msgs.push((start..self.buf.len(), dest));
    }

    /// Sends everything queued on `fd` and clears the batch.
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut done = Flushed::default();
        let mut names: Vec<libc::sockaddr_in> = self
            .msgs
            .iter()
            .map(|(_, d)| sockaddr_in(d.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))))
            .collect();
        let mut iovs: Vec<libc::iovec> = self
            .msgs
            .iter()
            .map(|(r, _)| libc::iovec {
                iov_base: self.buf[r.start..].as_mut_ptr().cast(),
                iov_len: r.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; pointers set below point into live vectors.
        let mut hdrs: Vec<libc::mmsghdr> =
            (0..self.msgs.len()).map(|_| unsafe { zeroed() }).collect();
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            if self.msgs[i].1.is_some() {
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
        }
        let mut at = 0;
        while at < hdrs.len() {
            // SAFETY: hdrs[at..] are valid headers pointing into live buffers.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[at..].as_mut_ptr(),
                    (hdrs.len() - at) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                done.sent += n as usize;
                at += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::debug!(error = %e, "send refused");
            done.failed += 1;
            at += 1;
        }
        self.buf.clear();
        self.msgs.clear();
        done
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// An AF_PACKET socket bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl PacketSocket {
    /// A socket that receives IPv4 frames to `vip` arriving on `ifindex` (a classic BPF filter
    /// keeps everything else in the kernel; our own outgoing frames are ignored).
    pub fn intake(ifindex: u32, vip: Ipv4Addr) -> io::Result<Self> {
        let s = Self::bound(ifindex, libc::ETH_P_IP as u16)?;
        let one: libc::c_int = 1;
        setsockopt(
            s.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
        )?;
        // Per-packet status, for TP_STATUS_CSUMNOTREADY (read with RecvSlots::with_auxdata).
        setsockopt(s.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        let vip = u32::from(vip);
        let mut code = [
            bpf(0x28, 0, 0, 12),          // ldh [12]        ethertype
            bpf(0x15, 0, 3, 0x0800),      // jeq #IPv4 else drop
            bpf(0x20, 0, 0, 30),          // ld [30]         IPv4 destination
            bpf(0x15, 0, 1, vip),         // jeq #vip else drop
            bpf(0x06, 0, 0, 0x0004_0000), // ret #262144     accept
            bpf(0x06, 0, 0, 0),           // ret #0          drop
        ];
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_mut_ptr(),
        };
        setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
        )?;
        // Frames that arrived between socket() and the filter: discard them.
        let mut slots = RecvSlots::new(64, 64);
        while slots.recv(s.as_raw_fd())? > 0 {}
        Ok(s)
    }

    /// A send-only socket for frames leaving on `ifindex` (protocol 0: receives nothing).
    pub fn sender(ifindex: u32) -> io::Result<Self> {
        let s = Self::bound(ifindex, 0)?;
        let one: libc::c_int = 1;
        // Skip the qdisc layer: frames go straight to the driver, like a switch port would.
        let _ = setsockopt(
            s.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one,
        );
        Ok(s)
    }

    fn bound(ifindex: u32, proto: u16) -> io::Result<Self> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto.to_be()))?;
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd })
    }
}

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A raw IPv4 socket that sends complete IPv4 packets (IPPROTO_RAW implies IP_HDRINCL): ICMP
/// errors from the balancer, re-injected packets on the agent.
pub struct RawIpSocket {
    fd: OwnedFd,
}

impl AsRawFd for RawIpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl RawIpSocket {
    /// Opens the socket.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?,
        })
    }

    /// Sends one IPv4 packet to its destination address.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if packet.len() < 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shorter than an IPv4 header",
            ));
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let sa = sockaddr_in(SocketAddrV4::new(dst, 0));
        // SAFETY: valid buffer and sockaddr_in.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_names_each_datagrams_sender() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.2:0").unwrap();
        let to = rx.local_addr().unwrap();
        a.send_to(b"from a", to).unwrap();
        b.send_to(b"from b", to).unwrap();
        assert!(wait_readable(rx.as_raw_fd(), Duration::from_secs(1)).unwrap());
        let mut slots = RecvSlots::new(8, 64);
        let mut got = Vec::new();
        while got.len() < 2 {
            slots.recv(rx.as_raw_fd()).unwrap();
            for (p, src) in slots.datagrams() {
                got.push((p.to_vec(), src.map(std::net::SocketAddr::V4)));
            }
        }
        assert_eq!(
            got,
            vec![
                (b"from a".to_vec(), Some(a.local_addr().unwrap())),
                (b"from b".to_vec(), Some(b.local_addr().unwrap())),
            ]
        );
    }
}
