//! `lb server`: the VIP, the intake rules, one data-path thread per queue, and a clean stop.
//!
//! Start: the NFQUEUE rules first (stale ones from a crashed run removed), then the VIP as a
//! /32 on the interface whose subnet holds it, so that no packet to the VIP ever reaches a
//! kernel that would answer it. Stop (SIGINT/SIGTERM): the VIP first, then the rules.
//!
//! Each data-path thread owns a [`State`]: with several queues the kernel's `--queue-balance`
//! sends every packet of a flow to the same queue, so threads share nothing and agree on new
//! flows because Maglev over the keyed hash is the same table in each.

pub mod datapath;
pub mod intake;
pub mod registrar;
mod settings;

use crate::cli::BadInput;
use crate::sys::flowmap;
use crate::sys::markroute::MarkRoutes;
use crate::sys::netlink;
use crate::sys::rules::Apply as _;
use crate::sys::sock::{PacketSocket, set_rcvbuf};
use anyhow::{Context, Result};
use datapath::mailbox::{self};
use datapath::{Totals, new_path};
use intake::packet::packet_loop;
use lb_core::config::{BackendEntry, Intake, VerdictMode};
use lb_core::forward::ENCAP_PORT;
use lb_core::rules::{FastPathRules, Hook, QueueRules};
use lb_core::select::hash::HashKey;
use lb_core::{BackendSpec, Config, ForwardConfig, ForwardMode, Framing, MacAddr, State};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use crate::sys::markroute::backend_mark;
pub use crate::sys::netlink::{IfAddr, vip_interface};
pub use settings::ServerSettings;

/// What a stop must undo; dropping it undoes what was done, in reverse order.
struct Installed {
    routes: Option<MarkRoutes>,
    fast: Option<FastPathRules>,
    rules: Option<QueueRules>,
    vip: Option<(u32, Ipv4Addr)>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some((ifindex, vip)) = self.vip.take() {
            match netlink::del_host_address(ifindex, vip) {
                Ok(()) => tracing::info!(%vip, "removed the VIP"),
                Err(e) => tracing::error!("remove VIP {vip}: {e:#}"),
            }
        }
        if let Some(rules) = self.rules.take() {
            match rules.remove() {
                Ok(n) => tracing::info!(rules = n, "removed the NFQUEUE rules"),
                Err(e) => tracing::error!("remove NFQUEUE rules: {e:#}"),
            }
        }
        if let Some(fast) = self.fast.take() {
            match flowmap::remove(&fast) {
                Ok(()) => tracing::info!(table = %fast.table(), "removed the fast path"),
                Err(e) => tracing::error!("remove the fast path: {e:#}"),
            }
        }
        if let Some(routes) = self.routes.take() {
            match routes.remove() {
                Ok(true) => {
                    tracing::info!("removed the dsr-kernel rules and routes, restored the sysctls")
                }
                Ok(false) => tracing::info!(
                    "removed the dsr-kernel rules and routes; another balancer's rules remain, so the forwarding sysctls stay"
                ),
                Err(e) => tracing::error!("remove dsr-kernel rules and routes: {e:#}"),
            }
        }
    }
}

/// The intake as the `ready:` line and `lb ctl state` show it (`ifname`: the VIP's interface).
pub fn intake_description(s: &ServerSettings, ifname: &str) -> String {
    match s.server.intake {
        Intake::Nfqueue => {
            let last = s.server.queue + s.server.queues - 1;
            let verdicts = match s.server.verdict {
                VerdictMode::Batch => "batch verdicts",
                VerdictMode::PerPacket => "per-packet verdicts",
            };
            match s.server.queues {
                1 => format!("nfqueue {} ({verdicts})", s.server.queue),
                _ => format!("nfqueue {}-{last} ({verdicts})", s.server.queue),
            }
        }
        Intake::Packet => format!(
            "packet socket on {ifname} (no NFQUEUE rule: the kernel answers the VIP itself)"
        ),
    }
}

/// Checks backend `b` against the VIP's interface `iface` and the host's addresses `local`: a
/// backend must not be an address of this host (its packets would come back, a loop), and the
/// DSR modes need it on the VIP's LAN (`dsr` unless its MAC is given).
pub fn check_backend(
    s: &ServerSettings,
    b: &BackendEntry,
    iface: &IfAddr,
    local: &[IfAddr],
) -> Result<(), String> {
    if let Some(own) = local.iter().find(|a| a.addr == b.addr) {
        return Err(format!(
            "backend {} ({}) is an address of this host ({}): its packets would come back to the balancer",
            b.name, b.addr, own.ifname
        ));
    }
    // dsr-kernel routes via the backend, so it must be on the LAN even with a MAC.
    let needs_lan = match s.server.forward {
        ForwardMode::Dsr => b.mac.is_none(),
        ForwardMode::DsrKernel => true,
        ForwardMode::UdpEncap => false,
    };
    if needs_lan && !iface.contains(b.addr) {
        return Err(format!(
            "backend {} ({}): DSR needs backends on the VIP's LAN ({}/{} on {})",
            b.name, b.addr, iface.addr, iface.prefix, iface.ifname
        ));
    }
    Ok(())
}

fn backend_specs(s: &ServerSettings, iface: &IfAddr, local: &[IfAddr]) -> Result<Vec<BackendSpec>> {
    s.server
        .backends
        .iter()
        .map(|b: &BackendEntry| {
            check_backend(s, b, iface, local).map_err(BadInput)?;
            backend_spec(s, iface, b)
        })
        .collect()
}

/// The spec of a checked backend: its MAC resolved for `dsr` when none is given.
fn backend_spec(s: &ServerSettings, iface: &IfAddr, b: &BackendEntry) -> Result<BackendSpec> {
    if s.server.forward == ForwardMode::DsrKernel && b.mac.is_some() {
        tracing::warn!(
            backend = %b.name,
            "the MAC given is not used with dsr-kernel: the kernel resolves it"
        );
    }
    let mac = match (s.server.forward, b.mac) {
        (ForwardMode::Dsr, Some(mac)) => mac,
        (ForwardMode::Dsr, None) => {
            let mac = netlink::resolve_mac(iface.ifindex, b.addr, Duration::from_secs(3))
                .with_context(|| format!("backend {}", b.name))?;
            tracing::info!(backend = %b.name, addr = %b.addr, %mac, "resolved backend MAC");
            mac
        }
        // The kernel resolves the MAC itself (the route's gateway is the backend).
        (ForwardMode::UdpEncap | ForwardMode::DsrKernel, _) => MacAddr::default(),
    };
    Ok(BackendSpec::new(b.name.clone(), b.addr, mac).with_weight(b.weight))
}

/// Backends taken in at run time (`lb ctl add`) get what a `--backend` gets at start: the
/// checks, a resolved MAC (`dsr`), a mark route (`dsr-kernel`).
struct RuntimeBackends {
    s: ServerSettings,
    iface: IfAddr,
    local: Vec<IfAddr>,
    routes: Option<MarkRoutes>,
}

impl registrar::Admission for RuntimeBackends {
    fn admit(&self, b: &BackendEntry) -> std::result::Result<BackendSpec, String> {
        check_backend(&self.s, b, &self.iface, &self.local)?;
        let spec = backend_spec(&self.s, &self.iface, b).map_err(|e| format!("{e:#}"))?;
        if let Some(r) = &self.routes {
            r.add(self.iface.ifindex, b.addr)
                .map_err(|e| format!("backend {}: {e:#}", b.name))?;
        }
        Ok(spec)
    }

    fn release(&self, addr: Ipv4Addr) {
        if let Some(r) = &self.routes
            && let Err(e) = r.remove_backend(addr)
        {
            tracing::warn!("backend {addr}: its dsr-kernel route: {e:#}");
        }
    }
}

/// The data path's configuration: the VIP, the framing the intake delivers, Maglev and
/// connection-table sizes, and forwarding from `local_ip`/`local_mac` (the VIP's interface).
pub fn core_config(s: &ServerSettings, local_ip: Ipv4Addr, local_mac: MacAddr) -> Config {
    Config {
        vips: vec![s.vip],
        framing: match s.server.intake {
            // dsr-kernel reads only the headers: the kernel keeps and forwards the packet.
            Intake::Nfqueue if s.server.forward == ForwardMode::DsrKernel => Framing::Ipv4Head,
            Intake::Nfqueue => Framing::Ipv4,
            Intake::Packet => Framing::Ethernet,
        },
        hash_mode: s.server.hash,
        hash_key: s
            .server
            .hash_key
            .as_deref()
            .map(HashKey::from_text)
            .unwrap_or_default(),
        table_size: s.server.table_size,
        conn_capacity: s.server.conn_capacity,
        table_grace: s.server.table_grace.0,
        forward: ForwardConfig {
            mode: s.server.forward,
            local_ip,
            local_mac,
            mtu: s.server.mtu,
            clamp_mss: s.server.clamp_mss,
            ..ForwardConfig::default()
        },
        ..Config::default()
    }
}

/// The NFQUEUE rules `lb server` installs for these settings (none for a packet intake).
pub fn queue_rules(s: &ServerSettings) -> Option<QueueRules> {
    (s.server.intake == Intake::Nfqueue).then(|| QueueRules {
        vip: s.vip,
        protocols: protocol_names(s),
        ports: s.server.ports.clone(),
        queue: s.server.queue,
        queues: s.server.queues,
        bypass: s.server.queue_bypass,
        hook: match s.server.forward {
            ForwardMode::DsrKernel => Hook::Prerouting,
            _ => Hook::Input,
        },
    })
}

/// The balanced protocols by name (`tcp`, `udp`), as the rules take them.
fn protocol_names(s: &ServerSettings) -> Vec<String> {
    s.server
        .protocols
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}

/// The fast path's table for these settings (`--fast-path`), on the VIP's interface `ifname`.
pub fn fast_path_rules(s: &ServerSettings, ifname: &str) -> Option<FastPathRules> {
    s.server.fast_path.then(|| FastPathRules {
        vip: s.vip,
        ifname: ifname.to_string(),
        protocols: protocol_names(s),
        size: s.server.conn_capacity * usize::from(s.server.queues),
    })
}

/// The line `lb server` prints once it is ready: the VIP and its interface, the intake, the
/// forwarding, the backends, the registration listener and the ctl socket (`ctl`) if any.
pub fn ready_line(
    s: &ServerSettings,
    ifname: &str,
    backends: &[BackendSpec],
    ctl: Option<&std::path::Path>,
) -> String {
    let names: Vec<String> = backends
        .iter()
        .map(|b| format!("{} {}", b.name, b.addr))
        .collect();
    let mode = match s.server.fast_path {
        true => format!("{} with the fast path", s.server.forward.name()),
        false => s.server.forward.name().to_string(),
    };
    let mut extra = String::new();
    if let Some(c) = s.server.control {
        extra += &format!(
            ", registration on {}{}",
            c.0,
            if s.secret.is_some() {
                " (shared secret)"
            } else {
                ""
            }
        );
    }
    if let Some(c) = ctl {
        extra += &format!(", ctl {}", c.display());
    }
    if let Some(m) = s.server.metrics {
        extra += &format!(", metrics http://{m}/metrics");
    }
    format!(
        "ready: vip {} on {ifname}, intake {}, forward {mode}, backends [{}]{extra}",
        s.vip,
        intake_description(s, ifname),
        names.join(", ")
    )
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(s: ServerSettings) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("install signal handler")?;
    }
    let local = netlink::addresses()?;
    let iface =
        netlink::vip_interface(&local, s.vip, s.server.interface.as_deref()).map_err(BadInput)?;
    let local_mac = netlink::link_mac(iface.ifindex).unwrap_or_default();
    let specs = backend_specs(&s, &iface, &local)?;
    if specs.is_empty() {
        tracing::warn!("no backends: every packet to the VIP is dropped");
    }
    let cfg = core_config(&s, iface.addr, local_mac);
    // Checked before anything is installed; without a connection table, which each data path
    // allocates for itself.
    State::new(Config {
        conn_capacity: 0,
        ..cfg.clone()
    })
    .map_err(|e| BadInput(format!("balancer configuration: {e}")))?;
    // Everything that can refuse the configuration is checked or bound before the first rule,
    // route or VIP is installed: the intake's description, the registry, the ctl socket and
    // the registration listener.
    let intake_desc = intake_description(&s, &iface.ifname);
    let mut control = registrar::ControlSettings {
        vip: s.vip,
        listen: s.server.control.map(|e| e.0),
        timing: s.control.clone(),
        secret: s.secret.clone(),
        max_pending: s.server.max_pending,
        max_agents: s.server.max_agents,
        check: s.server.check.clone(),
        drain_timeout: s.server.drain_timeout.0,
        data_addr: iface.addr,
        encap_port: ENCAP_PORT,
        description: intake_desc.clone(),
        queues: (s.server.intake == Intake::Nfqueue)
            .then_some(s.server.queue..s.server.queue + s.server.queues),
        metrics: s.server.metrics,
        admission: None,
    };
    let registry = registrar::registry(&control, &specs)?;
    let mut ctl_socket = crate::ctl::bind(&s.server.ctl_socket, s.ctl_socket_given)?;
    let bound = registrar::bind(&control, ctl_socket.as_mut().and_then(|c| c.take()))?;

    let mut installed = Installed {
        routes: None,
        fast: None,
        rules: None,
        vip: None,
    };
    if s.server.forward == ForwardMode::DsrKernel {
        // Routes before the queue rules: a packet accepted with a mark must find its route.
        let addrs: Vec<Ipv4Addr> = specs.iter().map(|b| b.addr).collect();
        installed.routes = Some(MarkRoutes::install(
            s.vip,
            iface.ifindex,
            &iface.ifname,
            &addrs,
        )?);
    }
    let fast = fast_path_rules(&s, &iface.ifname);
    if let Some(rules) = &fast {
        // Before the queue rules: the first flow decided finds its map.
        installed.fast = Some(rules.clone());
        flowmap::install(rules)?;
    }
    let mut threads = Vec::new();
    let mut handles = Vec::new();
    match s.server.intake {
        Intake::Nfqueue => {
            let rules = queue_rules(&s).context("NFQUEUE rules for an NFQUEUE intake")?;
            // Bind the queues before the rules exist, so no packet meets an unbound queue.
            let mut queues = Vec::new();
            for q in s.server.queue..s.server.queue + s.server.queues {
                queues.push(intake::nfqueue::bind_queue(q, &s.server)?);
            }
            // Recorded first: a failure halfway leaves rules that the stop must remove.
            installed.rules = Some(rules.clone());
            rules.install().context("install NFQUEUE rules")?;
            for queue in queues {
                let (handle, ctl) = mailbox::channel().context("eventfd")?;
                handles.push(handle);
                let path = new_path(&s, &cfg, &specs, &iface, ctl, fast.as_ref())?;
                let stop = Arc::clone(&stop);
                let (batch, mode) = (s.server.batch, s.server.verdict);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("queue-{}", queue.num()))
                        .spawn(move || {
                            intake::nfqueue::nfqueue_loop(queue, path, batch, mode, &stop)
                        })
                        .context("spawn data path thread")?,
                );
            }
        }
        Intake::Packet => {
            let sock = PacketSocket::intake(iface.ifindex, s.vip)
                .with_context(|| format!("packet socket on {}", iface.ifname))?;
            let _ = set_rcvbuf(sock.as_raw_fd(), s.server.rcvbuf);
            let (handle, ctl) = mailbox::channel().context("eventfd")?;
            handles.push(handle);
            let path = new_path(&s, &cfg, &specs, &iface, ctl, fast.as_ref())?;
            let stop = Arc::clone(&stop);
            let batch = s.server.batch;
            threads.push(
                std::thread::Builder::new()
                    .name("packet".into())
                    .spawn(move || packet_loop(sock, path, batch, &stop))
                    .context("spawn data path thread")?,
            );
        }
    }
    if let (Some(listen), None) = (s.server.control, &s.secret) {
        tracing::warn!(
            "registration on {} is unauthenticated: any host that reaches it can register itself \
             as a backend and take a share of the clients; give control.secret_file (--secret-file)",
            listen.0
        );
    }
    control.admission = Some(Arc::new(RuntimeBackends {
        s: s.clone(),
        iface: iface.clone(),
        local: local.clone(),
        routes: installed.routes.clone(),
    }));
    let control_thread = registrar::spawn(control, registry, handles, bound, Arc::clone(&stop))?;
    let added = netlink::add_host_address(iface.ifindex, s.vip)?;
    installed.vip = Some((iface.ifindex, s.vip));
    if !added {
        tracing::warn!(vip = %s.vip, "the VIP was already on {}: a stale address, taken over", iface.ifname);
    }
    let ctl_path = ctl_socket.as_ref().map(|c| c.path().to_path_buf());
    println!(
        "{}",
        ready_line(&s, &iface.ifname, &specs, ctl_path.as_deref())
    );
    let _ = std::io::stdout().flush();

    let mut totals = Totals::default();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(path)) => totals.add(&path),
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(anyhow::anyhow!("a data path thread panicked"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if control_thread.join().is_err() {
        tracing::error!("the control thread panicked");
    }
    drop(ctl_socket);
    drop(installed);
    totals.log();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
