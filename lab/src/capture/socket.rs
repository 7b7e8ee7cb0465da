//! The AF_PACKET socket: open and bind inside a namespace, read frames from anywhere.
//!
//! Arming: the socket is created with protocol 0, so it receives nothing, and `bind` then sets
//! `ETH_P_ALL` and the interface in one step. The kernel registers the tap synchronously inside
//! `bind`, so every frame the namespace sends or receives after `bind` returns is queued on the
//! socket; none from before `bind` (or from other interfaces) is. This is the same order libpcap
//! uses, and it is what makes "armed" provable without sleeping.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

use super::{CaptureError, Frame, LinkType, PacketType};

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_NONE: u16 = 0xfffe;
/// Receive buffer asked for; the kernel doubles it. Big enough for bursts of a lab run.
const RCVBUF: libc::c_int = 8 << 20;

/// `struct tpacket_stats` from `<linux/if_packet.h>`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// An AF_PACKET socket bound to one interface, or all, of the namespace it was opened in.
///
/// Armed once [`PacketSocket::open`] returns: it is created with protocol 0 (receiving nothing)
/// and `bind` sets `ETH_P_ALL` and the interface in one step, registering the kernel tap
/// synchronously. Every frame the namespace sends or receives afterwards is queued on it.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    interface: Option<String>,
    /// Interface names of the namespace at open time (names are per namespace, so they can
    /// only be looked up from a thread inside it).
    names: BTreeMap<i32, String>,
}

/// What one `recv` returned.
pub(super) enum Received {
    Frame(Frame),
    /// Loopback shows every frame twice (outgoing, then incoming); libpcap skips the outgoing copy.
    LoopbackOutgoing,
    WouldBlock,
}

impl PacketSocket {
    /// Opens a socket on `interface` (`None`: every interface) of the calling thread's namespace.
    ///
    /// Call this on a thread that is already inside the target network namespace (after
    /// `setns`, or inside `netns_rs::NetNs::run`). The socket stays bound to that namespace,
    /// so it can be read from any thread afterwards. Needs CAP_NET_RAW in that namespace.
    pub fn open(interface: Option<&str>) -> Result<Self, CaptureError> {
        let what = interface.unwrap_or("any").to_string();
        let io_err = |op: &'static str| {
            let what = what.clone();
            move |source: io::Error| CaptureError::Socket {
                op,
                interface: what,
                source,
            }
        };
        let names = interface_names().map_err(io_err("if_nameindex"))?;
        let ifindex = match interface {
            None => 0,
            Some(name) => names
                .iter()
                .find(|(_, n)| n.as_str() == name)
                .map(|(i, _)| *i)
                .ok_or_else(|| CaptureError::NoSuchInterface {
                    name: name.to_string(),
                })?,
        };
        // SAFETY: plain syscall; the returned fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(io_err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF)
                .map_err(io_err("SO_RCVBUF"))?;
        }
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .map_err(io_err("SO_TIMESTAMPNS"))?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_err("bind")(io::Error::last_os_error()));
        }
        tracing::debug!(interface = %what, ifindex, "packet socket bound");
        Ok(Self {
            fd,
            interface: interface.map(str::to_string),
            names,
        })
    }

    /// The interface this socket is bound to, `None` for every interface.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// Reads one frame without blocking; `snaplen` bytes at most are kept.
    pub(super) fn recv(&self, snaplen: usize) -> io::Result<Received> {
        let mut buf = vec![0u8; snaplen.max(1)];
        // SAFETY: plain data, zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data, zero is valid.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>();
        // MSG_TRUNC: the return value is the frame's real length even when the buffer is shorter.
        // SAFETY: every pointer in `msg` points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(Received::WouldBlock),
                io::ErrorKind::Interrupted => Ok(Received::WouldBlock),
                _ => Err(e),
            };
        }
        let orig_len = n as usize;
        let hatype = addr.sll_hatype;
        let packet_type = PacketType::from_raw(addr.sll_pkttype);
        if hatype == ARPHRD_LOOPBACK && packet_type == PacketType::Outgoing {
            return Ok(Received::LoopbackOutgoing);
        }
        buf.truncate(orig_len.min(buf.len()));
        let timestamp = timestamp_from_cmsg(&msg).unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
        });
        let interface = self
            .names
            .get(&addr.sll_ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{}", addr.sll_ifindex));
        let link = match hatype {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => LinkType::Ethernet,
            ARPHRD_NONE => LinkType::RawIp,
            other => LinkType::Other(other),
        };
        Ok(Received::Frame(Frame {
            timestamp,
            packet_type,
            interface,
            link,
            protocol: u16::from_be(addr.sll_protocol),
            orig_len: u32::try_from(orig_len).unwrap_or(u32::MAX),
            data: buf,
        }))
    }

    /// Reads one frame without blocking (`None`: nothing queued); `snaplen` bytes at most.
    pub fn try_recv(&self, snaplen: usize) -> io::Result<Option<Frame>> {
        match self.recv(snaplen)? {
            Received::Frame(f) => Ok(Some(f)),
            Received::LoopbackOutgoing | Received::WouldBlock => Ok(None),
        }
    }

    /// Transmits one whole Ethernet frame out of the bound interface (not through its qdisc's
    /// netfilter: it leaves as it is). Needs a socket bound to one interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for its length; the socket is bound to an interface.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kernel counters since the previous call: (packets, drops). `packets` includes drops.
    pub(super) fn statistics(&self) -> io::Result<(u64, u64)> {
        let mut st = TpacketStats::default();
        let mut len = size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` is a repr(C) tpacket_stats and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn setsockopt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a c_int and the length says so.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn timestamp_from_cmsg(msg: &libc::msghdr) -> Option<Duration> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros stay inside msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Interface index → name for the calling thread's namespace.
fn interface_names() -> io::Result<BTreeMap<i32, String>> {
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut names = BTreeMap::new();
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
            names.insert((*p).if_index as i32, name);
            p = p.add(1);
        }
        libc::if_freenameindex(list);
        Ok(names)
    }
}

/// An eventfd used to wake the reader thread when the caller asks it to stop.
#[derive(Debug)]
pub(super) struct Waker(OwnedFd);

impl Waker {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned right away.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64, as eventfd requires. A full counter cannot
        // happen with one write per stop, so the result carries nothing worth handling.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Waits until `sock` or `waker` is readable, or `timeout` passes. Returns (sock, waker) readiness.
pub(super) fn poll2(
    sock: RawFd,
    waker: RawFd,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: sock,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: waker,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = match timeout {
        None => -1,
        // Round up so a deadline 0.4 ms away does not spin.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `fds` is a valid array of two pollfd.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}
