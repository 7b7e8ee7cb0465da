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
//! set by [`ForwardingSysctls`] and restored at stop.

use super::netlink::block_on;
use super::set_sysctl;
use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use rtnetlink::packet_route::route::RouteProtocol;
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
#[derive(Debug)]
pub struct MarkRoutes {
    vip: Ipv4Addr,
    backends: Vec<Ipv4Addr>,
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

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
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

async fn del_rules(handle: &Handle, vip: Ipv4Addr) -> Result<usize> {
    let stale: Vec<Rule> = rules(handle)
        .await?
        .into_iter()
        .filter(|r| r.is_ours(Some(vip)))
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
    /// removing what a crashed run left for the same VIP.
    pub fn install(vip: Ipv4Addr, ifindex: u32, backends: &[Ipv4Addr]) -> Result<MarkRoutes> {
        let installed = MarkRoutes {
            vip,
            backends: backends.to_vec(),
        };
        block_on(|handle| async move {
            let stale = del_rules(&handle, vip).await?;
            if stale > 0 {
                tracing::warn!(
                    rules = stale,
                    "removed stale dsr-kernel rules of an earlier run"
                );
            }
            let all = rules(&handle).await?;
            let Some(local) = all.iter().find(|r| r.is_local()) else {
                bail!(
                    "no `lookup local` rule in this namespace's IPv4 rules: dsr-kernel needs one"
                );
            };
            for &b in backends {
                handle
                    .route()
                    .add(route(b, ifindex))
                    .replace()
                    .execute()
                    .await
                    .with_context(|| {
                        format!("add route `default via {b}` in table {}", backend_mark(b))
                    })?;
                let mark = backend_mark(b);
                let mut add = handle
                    .rule()
                    .add()
                    .v4()
                    .destination_prefix(vip, 32)
                    .fw_mark(mark)
                    .table_id(mark)
                    .priority(local.priority)
                    .action(RuleAction::ToTable);
                add.message_mut()
                    .attributes
                    .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO_LB)));
                add.execute()
                    .await
                    .with_context(|| format!("add rule `to {vip} fwmark {mark:#x}`"))?;
            }
            cycle_local(&handle, local, false).await
        })
        .inspect_err(|_| {
            let _ = installed.remove();
        })?;
        Ok(installed)
    }

    /// Removes this VIP's rules, the routes no rule refers to any more, and moves the local
    /// rule back to the kernel's protocol when no balancer rule is left.
    pub fn remove(&self) -> Result<()> {
        let (vip, backends) = (self.vip, self.backends.clone());
        block_on(|handle| async move {
            del_rules(&handle, vip).await?;
            let left = rules(&handle).await?;
            for b in backends {
                if left.iter().any(|r| r.table == backend_mark(b)) {
                    continue;
                }
                match handle.route().del(route(b, 0)).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::ESRCH) => {}
                    Err(e) => {
                        return Err(anyhow!(
                            "remove route `default via {b}` in table {}: {e}",
                            backend_mark(b)
                        ));
                    }
                }
            }
            if !left.iter().any(|r| r.is_ours(None))
                && let Some(local) = left.iter().find(|r| r.is_local())
            {
                cycle_local(&handle, local, true).await?;
            }
            Ok(())
        })
    }
}

/// The sysctls kernel forwarding needs on the VIP's interface, restored when dropped.
#[derive(Debug)]
pub struct ForwardingSysctls {
    old: Vec<(String, String)>,
}

impl ForwardingSysctls {
    /// Forwarding on for packets arriving on `ifname`, ICMP redirects off (the kernel would
    /// otherwise tell clients that the backend is a better first hop for the VIP).
    pub fn set(ifname: &str) -> Result<ForwardingSysctls> {
        let mut s = ForwardingSysctls { old: Vec::new() };
        // Slash-separated: an interface name may hold a dot (a VLAN: eth0.100).
        for (name, value) in [
            (format!("net/ipv4/conf/{ifname}/forwarding"), "1"),
            ("net/ipv4/conf/all/send_redirects".to_string(), "0"),
            (format!("net/ipv4/conf/{ifname}/send_redirects"), "0"),
        ] {
            let old = set_sysctl(&name, value)?;
            s.old.push((name, old));
        }
        Ok(s)
    }
}

impl Drop for ForwardingSysctls {
    fn drop(&mut self) {
        for (name, old) in self.old.drain(..).rev() {
            if let Err(e) = set_sysctl(&name, &old) {
                tracing::error!("restore sysctl {name}={old}: {e:#}");
            }
        }
    }
}
