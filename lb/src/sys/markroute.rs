//! `dsr-kernel` forwarding: policy routing that sends a packet marked for a backend to that
//! backend's MAC, so the data path only gives the verdict (ACCEPT with the mark) and the kernel
//! forwards the packet it already holds.
//!
//! For each backend `B` on the VIP's LAN, in the balancer's namespace:
//! - a route `default via B dev <if> table <B as u32> proto 108`: one table per backend, named
//!   by its address, so its content follows from its number and two balancers (two VIPs) that
//!   share a backend share the same route;
//! - a rule `to <VIP> fwmark <B as u32> lookup <B as u32> proto 108`, at the preference of the
//!   `lookup local` rule (usually 0) and *before* it: the VIP is a local address (it must be,
//!   to answer ARP), so without that order the local table would deliver the packet to the
//!   balancer's own stack. Rules of equal preference are kept in the order they were added, so
//!   the local rule is moved behind ours by adding a copy of it and then deleting the old one;
//!   at no moment is there no local rule. Protocol 108 (`lb`, no name in iproute2's
//!   rt_protos) tags what the balancer added.
//!
//! A start removes the rules an earlier (crashed) run left for the same VIP; a stop removes its
//! rules, the routes no other rule refers to, and gives the local rule back its kernel protocol
//! once no balancer's rule is left. The sysctls forwarding needs on the interface
//! (`forwarding=1`, no ICMP redirects, which would teach clients to bypass the balancer) are
//! set at start, their old values saved in /run/lb by the first balancer of the namespace (a
//! file that survives a crash), and restored by the last one to stop.
//! Starts and stops hold a lock (/run/lb/markroute.lock), so two balancers never move the
//! local rule at the same time.

use super::netlink::block_on;
use super::{read_sysctl, set_sysctl};
use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAttribute, RouteProtocol};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};

/// The route/rule protocol number that marks what the balancer added.
pub const PROTO_LB: u8 = 108;
/// `RT_TABLE_LOCAL`.
const LOCAL_TABLE: u32 = 255;

/// The mark (and routing table) that sends a packet to backend `addr`.
pub fn backend_mark(addr: Ipv4Addr) -> u32 {
    u32::from(addr)
}

/// The routes and rules installed for one VIP; [`MarkRoutes::remove`] takes them away.
#[derive(Debug, Clone)]
pub struct MarkRoutes {
    vip: Ipv4Addr,
    ifname: String,
}

/// What the rule dump says about one rule.
struct Rule {
    msg: RuleMessage,
    priority: u32,
    table: u32,
    mark: Option<u32>,
    dst: Option<(IpAddr, u8)>,
    protocol: u8,
    /// No selector at all (`from all`): e.g. the `lookup local` rule.
    plain: bool,
}

impl Rule {
    fn of(msg: RuleMessage) -> Rule {
        let mut r = Rule {
            priority: 0,
            table: u32::from(msg.header.table),
            mark: None,
            dst: None,
            protocol: 0,
            plain: msg.header.src_len == 0 && msg.header.dst_len == 0 && msg.header.tos == 0,
            msg,
        };
        for a in &r.msg.attributes {
            match a {
                RuleAttribute::Priority(p) => r.priority = *p,
                RuleAttribute::Table(t) => r.table = *t,
                RuleAttribute::FwMark(m) => r.mark = Some(*m),
                RuleAttribute::Destination(ip) => r.dst = Some((*ip, r.msg.header.dst_len)),
                RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
                RuleAttribute::FwMask(_) | RuleAttribute::SuppressPrefixLen(_) => {}
                _ => r.plain = false,
            }
        }
        r.plain &= r.mark.is_none();
        r
    }

    fn is_local(&self) -> bool {
        self.plain && self.table == LOCAL_TABLE && self.msg.header.action == RuleAction::ToTable
    }

    /// A balancer's mark rule, for `vip` if given.
    fn is_ours(&self, vip: Option<Ipv4Addr>) -> bool {
        self.protocol == PROTO_LB
            && self.mark.is_some()
            && vip.is_none_or(|v| self.dst == Some((IpAddr::V4(v), 32)))
    }
}

async fn rules(handle: &Handle) -> Result<Vec<Rule>> {
    let mut stream = handle.rule().get(IpVersion::V4).execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.try_next().await.context("list IPv4 rules")? {
        out.push(Rule::of(msg));
    }
    Ok(out)
}

/// Moves the `lookup local` rule behind every rule of its preference (see the module docs):
/// adds a copy with the other protocol (`lb` ↔ kernel, so the kernel does not see a
/// duplicate), then deletes the old one. `to_kernel` asks for the kernel protocol.
async fn cycle_local(handle: &Handle, local: &Rule, to_kernel: bool) -> Result<()> {
    let proto = match to_kernel || local.protocol == PROTO_LB {
        true => RouteProtocol::Kernel,
        false => RouteProtocol::Other(PROTO_LB),
    };
    if u8::from(proto) == local.protocol {
        return Ok(());
    }
    let mut add = handle
        .rule()
        .add()
        .v4()
        .table_id(LOCAL_TABLE)
        .priority(local.priority)
        .action(RuleAction::ToTable);
    add.message_mut()
        .attributes
        .push(RuleAttribute::Protocol(proto));
    add.execute()
        .await
        .context("add the `lookup local` rule behind the balancer's")?;
    handle
        .rule()
        .del(local.msg.clone())
        .execute()
        .await
        .context("remove the old `lookup local` rule")
}

/// A crash between the two steps of [`cycle_local`] leaves two `lookup local` rules at one
/// preference: keeps the first, deletes the others.
async fn dedup_local(handle: &Handle) -> Result<()> {
    let all = rules(handle).await?;
    let mut locals = all.iter().filter(|r| r.is_local());
    let Some(first) = locals.next() else {
        return Ok(());
    };
    for extra in locals.filter(|r| r.priority == first.priority) {
        tracing::warn!("removing a second `lookup local` rule left by an interrupted run");
        handle
            .rule()
            .del(extra.msg.clone())
            .execute()
            .await
            .context("remove a duplicate `lookup local` rule")?;
    }
    Ok(())
}

/// Deletes the routes of protocol 108 in tables no rule refers to any more (backends a
/// crashed run had and this one does not); returns how many.
async fn del_orphan_routes(handle: &Handle) -> Result<usize> {
    let referenced: Vec<u32> = rules(handle).await?.iter().map(|r| r.table).collect();
    let mut stream = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut orphans = Vec::new();
    while let Some(msg) = stream.try_next().await.context("list IPv4 routes")? {
        let table = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(msg.header.table));
        if msg.header.protocol == RouteProtocol::Other(PROTO_LB) && !referenced.contains(&table) {
            orphans.push(msg);
        }
    }
    for msg in &orphans {
        handle
            .route()
            .del(msg.clone())
            .execute()
            .await
            .context("remove a route of an earlier run")?;
    }
    Ok(orphans.len())
}

/// Runs `f` holding an exclusive lock on /run/lb/markroute.lock, so that two balancers
/// starting or stopping at once do not both move the local rule.
fn locked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::os::fd::AsRawFd;
    let dir = std::path::Path::new("/run/lb");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("markroute.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on an open descriptor; released when `file` is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("lock {}", path.display()));
    }
    f()
}

/// Deletes the balancer's rules for `vip`, only backend `b`'s if given; returns how many.
async fn del_rules(handle: &Handle, vip: Ipv4Addr, b: Option<Ipv4Addr>) -> Result<usize> {
    let stale: Vec<Rule> = rules(handle)
        .await?
        .into_iter()
        .filter(|r| r.is_ours(Some(vip)) && b.is_none_or(|b| r.mark == Some(backend_mark(b))))
        .collect();
    for r in &stale {
        handle
            .rule()
            .del(r.msg.clone())
            .execute()
            .await
            .with_context(|| format!("remove the rule for fwmark {:#x}", r.mark.unwrap_or(0)))?;
    }
    Ok(stale.len())
}

/// Backend `b`'s route (`default via b` in table `b`) and rule (`to vip fwmark b lookup b`) at
/// `priority`.
async fn add_backend(
    handle: &Handle,
    vip: Ipv4Addr,
    ifindex: u32,
    b: Ipv4Addr,
    priority: u32,
) -> Result<()> {
    let mark = backend_mark(b);
    handle
        .route()
        .add(route(b, ifindex))
        .replace()
        .execute()
        .await
        .with_context(|| format!("add route `default via {b}` in table {mark}"))?;
    let mut add = handle
        .rule()
        .add()
        .v4()
        .destination_prefix(vip, 32)
        .fw_mark(mark)
        .table_id(mark)
        .priority(priority)
        .action(RuleAction::ToTable);
    add.message_mut()
        .attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO_LB)));
    add.execute()
        .await
        .with_context(|| format!("add rule `to {vip} fwmark {mark:#x}`"))
}

fn route(backend: Ipv4Addr, ifindex: u32) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(backend_mark(backend))
        .gateway(backend)
        .output_interface(ifindex)
        .protocol(RouteProtocol::Other(PROTO_LB))
        .build()
}

impl MarkRoutes {
    /// Installs the routes and rules for `vip`'s `backends` (on interface `ifindex`), after
    /// removing what a crashed run left for the same VIP. On an error, what was added is
    /// removed again.
    pub fn install(
        vip: Ipv4Addr,
        ifindex: u32,
        ifname: &str,
        backends: &[Ipv4Addr],
    ) -> Result<MarkRoutes> {
        let installed = MarkRoutes {
            vip,
            ifname: ifname.to_string(),
        };
        locked(|| {
            set_forwarding(ifname)?;
            block_on(|handle| async move {
                let stale = del_rules(&handle, vip, None).await?;
                if stale > 0 {
                    tracing::warn!(rules = stale, "removed stale dsr-kernel rules of an earlier run");
                }
                del_orphan_routes(&handle).await?;
                dedup_local(&handle).await?;
                let all = rules(&handle).await?;
                let Some(local) = all.iter().find(|r| r.is_local()) else {
                    bail!(
                        "no `lookup local` rule in this namespace's IPv4 rules: dsr-kernel needs one"
                    );
                };
                for &b in backends {
                    add_backend(&handle, vip, ifindex, b, local.priority).await?;
                }
                cycle_local(&handle, local, false).await
            })
        })
        .inspect_err(|_| {
            let _ = installed.remove();
        })?;
        Ok(installed)
    }

    /// Adds backend `b` at run time (`lb ctl add`): its route and rule, then moves the local
    /// rule behind it again.
    pub fn add(&self, ifindex: u32, b: Ipv4Addr) -> Result<()> {
        let vip = self.vip;
        locked(|| {
            block_on(|handle| async move {
                let all = rules(&handle).await?;
                let Some(local) = all.iter().find(|r| r.is_local()) else {
                    bail!("no `lookup local` rule in this namespace's IPv4 rules");
                };
                add_backend(&handle, vip, ifindex, b, local.priority).await?;
                cycle_local(&handle, local, false).await
            })
        })
    }

    /// Removes backend `b`'s rule (`lb ctl remove`), and its route unless another balancer's
    /// rule still refers to it.
    pub fn remove_backend(&self, b: Ipv4Addr) -> Result<()> {
        let vip = self.vip;
        locked(|| {
            block_on(|handle| async move {
                del_rules(&handle, vip, Some(b)).await?;
                del_orphan_routes(&handle).await.map(|_| ())
            })
        })
    }

    /// Removes this VIP's rules and the routes no rule refers to any more, and, when no
    /// balancer's rule is left in the namespace, moves the local rule back to the kernel's
    /// protocol and restores the forwarding sysctls (another balancer's packets still need
    /// them otherwise). Returns whether it was the last.
    pub fn remove(&self) -> Result<bool> {
        let vip = self.vip;
        locked(|| {
            let last = block_on(|handle| async move {
                del_rules(&handle, vip, None).await?;
                del_orphan_routes(&handle).await?;
                let left = rules(&handle).await?;
                if left.iter().any(|r| r.is_ours(None)) {
                    return Ok(false);
                }
                if let Some(local) = left.iter().find(|r| r.is_local()) {
                    cycle_local(&handle, local, true).await?;
                }
                Ok(true)
            })?;
            if last {
                restore_forwarding(&self.ifname)?;
            }
            Ok(last)
        })
    }
}

/// The sysctls kernel forwarding needs on interface `ifname`, with the values to set: forwarding
/// on for packets arriving on it, ICMP redirects off (the kernel would otherwise tell clients
/// that the backend is a better first hop for the VIP). Slash-separated names: an interface
/// name may hold a dot (a VLAN: eth0.100).
fn forwarding_sysctls(ifname: &str) -> [(String, &'static str); 3] {
    [
        (format!("net/ipv4/conf/{ifname}/forwarding"), "1"),
        ("net/ipv4/conf/all/send_redirects".to_string(), "0"),
        (format!("net/ipv4/conf/{ifname}/send_redirects"), "0"),
    ]
}

/// Where the values the sysctls had before the first balancer of this namespace changed them
/// are kept: shared by the balancers of one namespace (the first writes it, the last restores
/// from it and deletes it), and it survives a crash, so a restart still knows the originals.
fn originals_path(ifname: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .context("read this thread's network namespace")?
        .ino();
    Ok(std::path::Path::new("/run/lb").join(format!("dsr-kernel-sysctls.{ns}.{ifname}")))
}

/// Sets the forwarding sysctls, after saving the current values unless a balancer of this
/// namespace saved them already (one running, or one that crashed).
fn set_forwarding(ifname: &str) -> Result<()> {
    let path = originals_path(ifname)?;
    if !path.exists() {
        let mut saved = String::new();
        for (name, _) in forwarding_sysctls(ifname) {
            saved += &format!("{name} {}\n", read_sysctl(&name)?);
        }
        std::fs::write(&path, saved).with_context(|| format!("write {}", path.display()))?;
    }
    for (name, value) in forwarding_sysctls(ifname) {
        set_sysctl(&name, value)?;
    }
    Ok(())
}

/// Puts the saved values back and deletes the file.
fn restore_forwarding(ifname: &str) -> Result<()> {
    let path = originals_path(ifname)?;
    let saved = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    for line in saved.lines() {
        if let Some((name, value)) = line.split_once(' ') {
            set_sysctl(name, value)?;
        }
    }
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))
}
