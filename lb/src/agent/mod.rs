//! `lb agent`: the backend side of the UDP encapsulation. It holds the VIP on `lo`, receives
//! Caplance-style datagrams on :1337 whose payload is a whole IPv4 packet, and writes each one
//! back into its own kernel through a raw socket, so the application bound to the VIP receives
//! the client's packet unchanged and answers the client directly (direct server return).
//!
//! Beyond Caplance: ARP for the VIP is suppressed (`arp_ignore=1`, `arp_announce=2`, restored at
//! stop) so the backend never answers the LAN for the VIP, and an inner packet is re-injected
//! only if it came from a balancer (one given with `--balancer`, or the one a registration
//! confirmed: the source of its SANITY datagram) and is IPv4 to the VIP: the agent is not an
//! open relay, and a host that can reach :1337 cannot inject forged packets.

pub mod registration;

use crate::sys::Sysctls;
use crate::sys::netlink;
use crate::sys::sock::{RawIpSocket, RecvSlots, SendBatch, set_rcvbuf, wait_readable};
use anyhow::{Context, Result};
use lb_core::decap::check_inner;
use registration::Stats;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What `lb agent` needs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// Receive address (UNSPECIFIED: any).
    pub data_ip: Ipv4Addr,
    /// Receive port (1337).
    pub port: u16,
    /// Datagrams per receive batch.
    pub batch: usize,
    /// The server to register with; none: no registration (a static backend of the server).
    pub server: Option<SocketAddrV4>,
    /// Balancers whose encapsulated packets are re-injected, besides the one registered with.
    pub balancers: Vec<Ipv4Addr>,
    /// The name to register.
    pub name: String,
    /// The `lb ctl` socket.
    pub ctl_socket: std::path::PathBuf,
    /// Whether the ctl socket's path was given.
    pub ctl_socket_given: bool,
    /// Longest wait between registration attempts.
    pub retry_max: Duration,
    /// Timing of the registration protocol.
    pub control: lb_core::config::ControlSection,
    /// The shared secret.
    pub secret: Option<lb_core::protocol::agent::Secret>,
}

const LOOPBACK: u32 = 1;
const ARP_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
];

/// Undoes the agent's changes on drop.
struct Installed {
    vip: Option<Ipv4Addr>,
    sysctls: Option<Sysctls>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(vip) = self.vip.take() {
            match netlink::del_host_address(LOOPBACK, vip) {
                Ok(()) => tracing::info!(%vip, "removed the VIP from lo"),
                Err(e) => tracing::error!("remove VIP {vip} from lo: {e:#}"),
            }
        }
        drop(self.sysctls.take());
    }
}

/// The line `lb agent` prints once it is ready (`ctl`: its ctl socket, if any).
pub fn ready_line(s: &AgentSettings, ctl: Option<&std::path::Path>) -> String {
    let mut extra = String::new();
    if let Some(server) = s.server {
        extra += &format!(", registering as {} with {server}", s.name);
    }
    if let Some(c) = ctl {
        extra += &format!(", ctl {}", c.display());
    }
    format!(
        "ready: vip {} on lo, receiving encapsulated packets on {}:{}{extra}",
        s.vip, s.data_ip, s.port
    )
}

/// Runs the agent until SIGINT/SIGTERM.
pub fn run(s: AgentSettings) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("install signal handler")?;
    }
    let sock = UdpSocket::bind((s.data_ip, s.port))
        .with_context(|| format!("bind UDP {}:{}", s.data_ip, s.port))?;
    let _ = set_rcvbuf(sock.as_raw_fd(), 16 << 20);
    let raw = RawIpSocket::new().context("raw socket for re-injection")?;

    let mut installed = Installed {
        vip: None,
        sysctls: Some(Sysctls::set(&ARP_SYSCTLS)?),
    };
    netlink::link_up(LOOPBACK)?;
    if !netlink::add_host_address(LOOPBACK, s.vip)? {
        tracing::warn!(vip = %s.vip, "the VIP was already on lo: taken over");
    }
    installed.vip = Some(s.vip);

    let stats = Arc::new(Stats::default());
    let (sanity_tx, sanity_rx) = tokio::sync::mpsc::channel(8);
    let mut ctl_socket = crate::ctl::bind(&s.ctl_socket, s.ctl_socket_given)?;
    let control = registration::spawn(
        registration::Settings {
            server: s.server,
            name: s.name.clone(),
            data_ip: s.data_ip,
            timing: s.control.clone(),
            secret: s.secret.clone(),
            retry_max: s.retry_max,
        },
        ctl_socket.as_mut().and_then(|c| c.take()),
        sanity_rx,
        Arc::clone(&stats),
        Arc::clone(&stop),
    )?;
    let ctl_path = ctl_socket.as_ref().map(|c| c.path().to_path_buf());
    println!("{}", ready_line(&s, ctl_path.as_deref()));
    let _ = std::io::stdout().flush();

    let mut slots = RecvSlots::new(s.batch, 65536);
    let mut out = SendBatch::default();
    let (mut received, mut injected, mut failed) = (0u64, 0u64, 0u64);
    let mut refused: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        if !wait_readable(fd, Duration::from_millis(200))? {
            continue;
        }
        let n = slots.recv(fd).context("receive encapsulated packets")?;
        received += n as u64;
        let mut not_injected = 0;
        // The balancers of this batch: configured ones and those a registration confirmed.
        let mut allowed = s.balancers.clone();
        if let Ok(learned) = stats.balancers.lock() {
            allowed.extend(learned.iter().copied());
        }
        for (p, from) in slots.datagrams() {
            let from = from.map(|a| *a.ip()).unwrap_or(Ipv4Addr::UNSPECIFIED);
            // The server proving the data path during a registration: a token, from anyone
            // (the registration confirms it; nothing is re-injected).
            if let Some(token) = lb_core::protocol::agent::parse_sanity(p) {
                stats.sanity.fetch_add(1, Ordering::Relaxed);
                let _ = sanity_tx.try_send((token.to_string(), from));
                continue;
            }
            if !allowed.contains(&from) {
                not_injected += 1;
                *refused.entry("not from a balancer").or_default() += 1;
                continue;
            }
            match check_inner(p, s.vip) {
                Ok(()) => {
                    let start = out.buf.len();
                    out.buf.extend_from_slice(p);
                    out.commit(start, Some(SocketAddrV4::new(s.vip, 0)));
                }
                Err(why) => {
                    not_injected += 1;
                    *refused.entry(why.name()).or_default() += 1
                }
            }
        }
        let f = out.flush(raw.as_raw_fd());
        injected += f.sent as u64;
        failed += f.failed as u64;
        stats.received.fetch_add(n as u64, Ordering::Relaxed);
        stats.injected.fetch_add(f.sent as u64, Ordering::Relaxed);
        stats.failed.fetch_add(f.failed as u64, Ordering::Relaxed);
        stats.refused.fetch_add(not_injected, Ordering::Relaxed);
    }
    // The control thread sees `stop` too and deregisters before the VIP goes.
    stop.store(true, Ordering::Relaxed);
    if control.join().is_err() {
        tracing::error!("the control thread panicked");
    }
    drop(ctl_socket);
    drop(installed);
    tracing::info!(received, injected, failed, "agent totals");
    for (why, n) in refused {
        tracing::info!(reason = why, datagrams = n, "not re-injected");
    }
    if let Some(reason) = stats.fatal.lock().ok().and_then(|mut f| f.take()) {
        return Err(crate::cli::BadInput(format!(
            "registration with {}: {reason} (give the agent its own --name, or the right secret)",
            s.server.map(|a| a.to_string()).unwrap_or_default()
        ))
        .into());
    }
    Ok(())
}
