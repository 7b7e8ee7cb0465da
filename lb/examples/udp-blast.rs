//! A UDP load generator and counter for `ci/bench-lb.sh`, cheap on both ends so that neither
//! is the bottleneck: `sendmmsg`/`recvmmsg` in batches of 64, a 64 MiB receive buffer.
//!
//! ```text
//! udp-blast send 10.0.0.50:9000 SECONDS [PAYLOAD_BYTES]   # prints: sent N pps P
//! udp-blast recv 10.0.0.50:9000 IDLE_MS                   # prints: received N pps P
//! ```
//! One flow (one socket, one source port). The receiver stops IDLE_MS after the last datagram
//! and rates what arrived between the first and the last one.

use std::mem::zeroed;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: udp-blast send ADDR:PORT SECONDS [BYTES] | recv ADDR:PORT IDLE_MS";
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
        ),
        "recv" => recv(addr, Duration::from_millis(n)),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

fn send(to: SocketAddrV4, secs: Duration, size: usize) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect(to).expect("connect");
    let payload = vec![0x5au8; size];
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: size,
        })
        .collect();
    // SAFETY: zeroed headers with one iovec each, pointing at `payload`.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        // SAFETY: valid socket and headers.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), BATCH as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!("sent {sent} pps {:.0}", sent as f64 / t);
}

fn recv(at: SocketAddrV4, idle: Duration) {
    let sock = UdpSocket::bind(at).expect("bind");
    let big: libc::c_int = 64 << 20;
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
    sock.set_read_timeout(Some(idle)).expect("timeout");
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
    loop {
        // SAFETY: valid socket and headers; blocks up to the read timeout for the first one.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            if first.is_some() {
                break;
            }
            continue;
        }
        last = Instant::now();
        first.get_or_insert(last);
        got += r as u64;
    }
    let t = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "received {got} pps {:.0}",
        if t > 0.0 { got as f64 / t } else { 0.0 }
    );
}
