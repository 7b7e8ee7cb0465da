//! A UDP load generator and counter for `ci/bench-lb.sh`, cheap on both ends so that neither
//! is the bottleneck: `sendmmsg`/`recvmmsg` in batches of 64, a 64 MiB receive buffer.
//!
//! ```text
//! udp-blast send 10.0.0.50:9000 SECONDS [PAYLOAD_BYTES [PPS [FLOWS]]]   # prints: sent N pps P
//! udp-blast recv 10.0.0.50:9000 IDLE_MS [FLOWS]                  # prints: received N pps P
//! udp-blast newflows 10.0.0.50:9000 SECONDS [PPS [PORTS]]          # prints: sent N pps P
//! ```
//! `newflows` makes every datagram a new flow (64-byte payloads): it writes the IPv4 and UDP
//! headers itself on a raw socket, the source port counting up from 1024 and, once the 64,512
//! source ports are used, the destination port moving on to the next of PORTS (default 16)
//! ports from PORT, so a run of up to a million datagrams repeats no 5-tuple. The receiver
//! is `recv` with FLOWS = PORTS.
//! One flow (one socket, one source port); with FLOWS > 1, that many flows to the ports
//! PORT..PORT+FLOWS-1, interleaved datagram by datagram (one unconnected socket, a destination
//! per message), and a receiver with one socket per port. PPS 0 is unpaced. With PPS the
//! sender is paced on a fixed schedule: it spins until 16 datagrams are due and sends all that
//! are due, up to 64 per call, so that a sender that falls behind catches up in full batches
//! and the average rate holds. The receiver stops IDLE_MS after the last datagram and rates
//! what arrived between the first and the last one.

use std::mem::zeroed;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: udp-blast send ADDR:PORT SECONDS [BYTES [PPS [FLOWS]]] | recv ADDR:PORT IDLE_MS [FLOWS] | newflows ADDR:PORT SECONDS [PPS [PORTS]]";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let addr: SocketAddrV4 = args[2].parse().unwrap_or_else(|_| {
        eprintln!("udp-blast: {:?} is not ADDR:PORT", args[2]);
        std::process::exit(2)
    });
    let n: u64 = args[3].parse().unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(2)
    });
    match args[1].as_str() {
        "send" => send(
            addr,
            Duration::from_secs(n),
            args.get(4).and_then(|s| s.parse().ok()).unwrap_or(64),
            args.get(5).and_then(|s| s.parse().ok()),
            flows(args.get(6)),
        ),
        "recv" => recv(addr, Duration::from_millis(n), flows(args.get(4))),
        "newflows" => new_flows(
            addr,
            Duration::from_secs(n),
            args.get(4).and_then(|s| s.parse().ok()),
            flows(args.get(5).or(Some(&"16".to_string()))),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

/// FLOWS: 1 to 1024 (ports above PORT).
fn flows(arg: Option<&String>) -> u16 {
    match arg.map(|s| s.parse::<u16>()) {
        None => 1,
        Some(Ok(n)) if (1..=1024).contains(&n) => n,
        Some(_) => {
            eprintln!("udp-blast: FLOWS is a number from 1 to 1024");
            std::process::exit(2)
        }
    }
}

/// The sockaddr of `addr`.
fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut a: libc::sockaddr_in = unsafe { zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = addr.port().to_be();
    a.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    a
}

fn send(to: SocketAddrV4, secs: Duration, size: usize, pps: Option<u64>, flows: u16) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    if flows == 1 {
        sock.connect(to).expect("connect");
    }
    // Message i of every call goes to flow i % flows (64 is a multiple of every power of two
    // up to 64; other counts still cycle through all flows over several calls).
    let mut dests: Vec<libc::sockaddr_in> = (0..BATCH)
        .map(|i| {
            let port = to.port() + (i as u16 % flows);
            sockaddr(SocketAddrV4::new(*to.ip(), port))
        })
        .collect();
    let payload = vec![0x5au8; size];
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: size,
        })
        .collect();
    // SAFETY: zeroed headers with one iovec each, pointing at `payload`.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    for ((h, iov), dest) in hdrs.iter_mut().zip(iovs.iter_mut()).zip(dests.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        if flows > 1 {
            h.msg_hdr.msg_name = (dest as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        let burst = due(start, sent, pps);
        // SAFETY: valid socket and headers.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), burst as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!("sent {sent} pps {:.0}", sent as f64 / t);
}

/// The smallest burst of a paced sender: it sleeps until this many datagrams are due.
const MIN_BURST: usize = 16;

/// How many datagrams to send now, `sent` having gone since `start` at `pps` (none or 0:
/// unpaced, a full batch). A paced sender waits until MIN_BURST are due and then sends all
/// that are due, up to a batch: one that falls behind (its CPU shared with the forwarding)
/// catches up in full batches, as cheap per datagram as the unpaced sender, instead of paying
/// a syscall and a wake-up for every 16.
fn due(start: Instant, sent: u64, pps: Option<u64>) -> usize {
    let Some(pps) = pps.filter(|&p| p > 0) else {
        return BATCH;
    };
    let at = |n: u64| start + Duration::from_secs_f64(n as f64 / pps as f64);
    // It waits by spinning, as packet generators do: a sleeping vCPU is handed back to the
    // hypervisor, whose wake-up comes late and at its own pace.
    let next = at(sent + MIN_BURST as u64);
    while Instant::now() < next {
        std::hint::spin_loop();
    }
    let due_now = (start.elapsed().as_secs_f64() * pps as f64) as u64;
    due_now
        .saturating_sub(sent)
        .clamp(MIN_BURST as u64, BATCH as u64) as usize
}

fn new_flows(to: SocketAddrV4, secs: Duration, pps: Option<u64>, ports: u16) {
    // The source address the kernel would pick towards `to`.
    let probe = UdpSocket::bind("0.0.0.0:0").expect("bind");
    probe.connect(to).expect("route to the destination");
    let std::net::SocketAddr::V4(local) = probe.local_addr().expect("local address") else {
        unreachable!("an IPv4 socket")
    };
    // SAFETY: plain socket(2); IP_HDRINCL is implied by IPPROTO_RAW.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    const LEN: usize = 20 + 8 + 64;
    let mut packets = vec![[0u8; LEN]; BATCH];
    for p in &mut packets {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&local.ip().octets());
        p[16..20].copy_from_slice(&to.ip().octets());
        p[24..26].copy_from_slice(&((8 + 64) as u16).to_be_bytes());
        // The kernel fills in the IP checksum (and the ID); a UDP checksum of 0 is "none".
    }
    let dest = sockaddr(to);
    // SAFETY: zeroed headers; their pointers are set once, below, to the packets that live
    // as long as they do.
    let mut iovs: Vec<libc::iovec> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    for ((h, iov), p) in hdrs.iter_mut().zip(iovs.iter_mut()).zip(packets.iter_mut()) {
        *iov = libc::iovec {
            iov_base: p.as_mut_ptr().cast(),
            iov_len: LEN,
        };
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_name = (&dest as *const libc::sockaddr_in).cast_mut().cast();
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        let burst = due(start, sent, pps);
        for (i, p) in packets.iter_mut().take(burst).enumerate() {
            let n = sent + i as u64;
            let sport = 1024 + (n % 64_512) as u16;
            let dport = to.port() + ((n / 64_512) % u64::from(ports)) as u16;
            p[20..22].copy_from_slice(&sport.to_be_bytes());
            p[22..24].copy_from_slice(&dport.to_be_bytes());
        }
        // SAFETY: valid socket and headers pointing at live packets.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), burst as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!("sent {sent} pps {:.0}", sent as f64 / t);
}

fn recv(at: SocketAddrV4, idle: Duration, flows: u16) {
    let big: libc::c_int = 64 << 20;
    let socks: Vec<UdpSocket> = (0..flows)
        .map(|i| {
            let sock = UdpSocket::bind(SocketAddrV4::new(*at.ip(), at.port() + i)).expect("bind");
            // SAFETY: valid socket and option.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&big as *const libc::c_int).cast(),
                    4,
                );
            }
            // One flow: a blocking receive with a timeout, one system call per batch; several:
            // poll, then a non-blocking receive on each ready socket.
            if flows == 1 {
                sock.set_read_timeout(Some(idle)).expect("timeout");
            } else {
                sock.set_nonblocking(true).expect("non-blocking");
            }
            sock
        })
        .collect();
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    println!("listening");
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: zeroed headers with one iovec each.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let (mut got, mut first, mut last) = (0u64, None, Instant::now());
    let mut idle_out = false;
    loop {
        let ready = match flows {
            1 => {
                fds[0].revents = libc::POLLIN;
                1
            }
            // SAFETY: `fds` is a live array of pollfd; waits up to `idle` for any socket.
            _ => unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    idle.as_millis() as libc::c_int,
                )
            },
        };
        if ready <= 0 {
            if first.is_some() {
                break;
            }
            continue;
        }
        for p in fds.iter().filter(|p| p.revents & libc::POLLIN != 0) {
            // SAFETY: valid socket and headers; with one flow it blocks up to the read
            // timeout for the first datagram.
            let r = unsafe {
                libc::recvmmsg(
                    p.fd,
                    hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if r > 0 {
                last = Instant::now();
                first.get_or_insert(last);
                got += r as u64;
            } else if flows == 1 && first.is_some() {
                idle_out = true;
            }
        }
        if idle_out {
            break;
        }
    }
    let t = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "received {got} pps {:.0}",
        if t > 0.0 { got as f64 / t } else { 0.0 }
    );
}
