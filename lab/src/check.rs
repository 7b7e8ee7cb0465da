//! Connectivity check: every host reaches every other host over UDP (no ping needed).

use crate::error::LabError;
use crate::lab::Lab;
use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// The UDP port the check listens on in every host.
pub const CHECK_PORT: u16 = 47999;

/// Result of [`check_connectivity`]: the (from, to) host pairs that did not get through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    /// Pairs tried.
    pub pairs: usize,
    /// True when every ordered pair was tried; false for the star + ring of a large lab.
    pub all_pairs: bool,
    /// Pairs that failed, as (from, to).
    pub missing: Vec<(String, String)>,
}

/// Sends a datagram from every host to every other host's first address; a pair fails when
/// nothing arrives within `timeout` (resent every 200 ms while ARP resolves).
pub fn check_connectivity(lab: &Lab, timeout: Duration) -> Result<Reachability, LabError> {
    let hosts: Vec<(String, Ipv4Addr)> = lab
        .plan()
        .hosts
        .iter()
        .filter_map(|h| {
            h.interfaces
                .iter()
                .flat_map(|i| &i.addresses)
                .next()
                .map(|a| (h.name.clone(), a.addr))
        })
        .collect();
    let mut socks = Vec::with_capacity(hosts.len());
    for (name, addr) in &hosts {
        let sock = lab
            .run_in(name, || {
                UdpSocket::bind(SocketAddrV4::new(*addr, CHECK_PORT))
            })?
            .map_err(|e| LabError::Spawn {
                node: name.clone(),
                command: format!("bind udp {addr}:{CHECK_PORT}"),
                message: e.to_string(),
            })?;
        sock.set_nonblocking(true).ok();
        socks.push(sock);
    }
    // A bounded window of probes in flight: sending all n² at once makes every host ARP for
    // every other at the same moment, and the bridge's broadcast copies overflow the per-CPU
    // backlog (netdev_max_backlog), so probes would be lost to the check itself.
    const WINDOW: usize = 16;
    const RESEND: Duration = Duration::from_millis(200);
    let (mut queue, all_pairs) = probe_pairs(hosts.len(), neighbour_limit());
    let pairs = queue.len();
    let mut in_flight: Vec<((usize, usize), Instant, Instant)> = Vec::new();
    let mut done: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut pending: BTreeSet<(usize, usize)> = BTreeSet::new();
    let send = |(a, b): (usize, usize)| {
        let _ = socks[a].send_to(
            format!("{a} {b}").as_bytes(),
            SocketAddrV4::new(hosts[b].1, CHECK_PORT),
        );
    };
    let mut buf = [0u8; 64];
    while !queue.is_empty() || !in_flight.is_empty() {
        while in_flight.len() < WINDOW
            && let Some(p) = queue.pop_front()
        {
            send(p);
            let now = Instant::now();
            in_flight.push((p, now, now));
        }
        for (b, s) in socks.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some((a, to)) = text.split_once(' ')
                    && let (Ok(a), Ok(to)) = (a.parse::<usize>(), to.parse::<usize>())
                    && to == b
                {
                    done.insert((a, b));
                }
            }
        }
        let now = Instant::now();
        in_flight.retain_mut(|(p, first, last)| {
            if done.contains(p) {
                return false;
            }
            if now - *first > timeout {
                pending.insert(*p);
                return false;
            }
            if now - *last > RESEND {
                send(*p);
                *last = now;
            }
            true
        });
        std::thread::sleep(Duration::from_micros(200));
    }
    let missing = pending
        .into_iter()
        .map(|(a, b)| (hosts[a].0.clone(), hosts[b].0.clone()))
        .collect();
    Ok(Reachability {
        pairs,
        all_pairs,
        missing,
    })
}

/// The kernel's neighbour table is shared by all namespaces and holds at most `gc_thresh3`
/// dynamic entries (1024 by default); an all-pairs check of n hosts needs about 2·n·(n−1).
fn neighbour_limit() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// All ordered pairs when they fit in a quarter of the neighbour table (other labs share it);
/// otherwise every host to and from the first host and to the next host (a star and a ring),
/// which still proves every host's link, address and the switch path.
fn probe_pairs(n: usize, limit: usize) -> (VecDeque<(usize, usize)>, bool) {
    if 2 * n * n.saturating_sub(1) <= limit / 4 {
        let all = (0..n)
            .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
            .collect();
        return (all, true);
    }
    let mut set = BTreeSet::new();
    for a in 1..n {
        set.insert((a, 0));
        set.insert((0, a));
        set.insert((a, (a + 1) % n));
    }
    set.retain(|(a, b)| a != b);
    (set.into_iter().collect(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_labs_check_all_pairs() {
        let (q, all) = probe_pairs(3, 1024);
        assert!(all);
        assert_eq!(q.len(), 6);
    }

    #[test]
    fn large_labs_check_star_and_ring() {
        let (q, all) = probe_pairs(50, 1024);
        assert!(!all);
        // Every host sends and receives at least once.
        for h in 0..50 {
            assert!(
                q.iter().any(|&(a, _)| a == h) && q.iter().any(|&(_, b)| b == h),
                "host {h}"
            );
        }
        assert!(q.len() < 3 * 50);
    }
}
