//! The deploy step: a [`Plan`] becomes namespaces, bridges, veth pairs, addresses, routes,
//! sysctls and firewall batches. The only module besides [`crate::remove`] that changes the
//! kernel, and it never touches the root namespace: every veth pair is created by one netlink
//! request sent inside a lab namespace, with its peer placed directly into the other node's
//! namespace (by fd), with ifindexes chosen by the plan so no lookups are needed.

use crate::error::LabError;
use crate::netns::{command_in, run_in, write_sysctls};
use crate::resolve::{HostPlan, LinkPlan, NodeKind, Plan};
use crate::state::NsRecord;
use futures::future::try_join_all;
use netns_rs::NetNs;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Stdio;

/// Creates the namespaces of `records` (each bind-mounted under /run/netns).
pub fn create_namespaces(records: &[NsRecord]) -> Result<HashMap<String, NetNs>, LabError> {
    let mut out = HashMap::with_capacity(records.len());
    for r in records {
        let ns = NetNs::new(&r.netns).map_err(|e| LabError::Namespace {
            node: r.node.clone(),
            netns: r.netns.clone(),
            message: e.to_string(),
        })?;
        out.insert(r.node.clone(), ns);
    }
    Ok(out)
}

fn nl(node: &str, what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LabError {
    let (node, what) = (node.to_string(), what.into());
    move |e| LabError::Netlink {
        node,
        what,
        message: netlink_message(&e),
    }
}

fn netlink_message(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => match m.code.map(|c| -c.get()) {
            Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

/// The namespace of `node` among `nss`, or the error that says it was not created.
fn namespace_of<'a>(nss: &'a HashMap<String, NetNs>, node: &str) -> Result<&'a NetNs, LabError> {
    nss.get(node).ok_or_else(|| LabError::Namespace {
        node: node.to_string(),
        netns: String::new(),
        message: "namespace was not created".into(),
    })
}

/// Configures links, addresses, routes, sysctls and firewalls in already created namespaces.
pub fn configure(plan: &Plan, nss: &HashMap<String, NetNs>) -> Result<(), LabError> {
    let ns = |node: &str| namespace_of(nss, node);
    // IPv6 off before any interface exists, so new interfaces inherit it (no ND/MLD noise).
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        let ipv6_off = [
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ];
        for node in plan
            .hosts
            .iter()
            .filter(|h| !h.ipv6)
            .map(|h| &h.name)
            .chain(plan.switches.iter().map(|s| &s.name))
        {
            write_sysctls(ns(node)?.path(), &ipv6_off)
                .map_err(|e| sysctl_err(node, &ipv6_off, e))?;
        }
    }

    // A switch is layer 2: when the kernel has bridge netfilter, bridged IPv4/IPv6/ARP frames
    // would otherwise traverse the switch namespace's iptables hooks (and conntrack), which
    // costs time on every frame and is nothing a real switch does.
    if std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        let no_br_nf = [
            ("net.bridge.bridge-nf-call-iptables", "0"),
            ("net.bridge.bridge-nf-call-ip6tables", "0"),
            ("net.bridge.bridge-nf-call-arptables", "0"),
        ];
        for node in plan.switches.iter().map(|s| &s.name) {
            write_sysctls(ns(node)?.path(), &no_br_nf)
                .map_err(|e| sysctl_err(node, &no_br_nf, e))?;
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| LabError::io(std::path::Path::new("tokio runtime"), e))?;
    let _guard = rt.enter();
    let mut handles: HashMap<&str, Handle> = HashMap::new();
    for node in plan.nodes() {
        let (conn, handle, _) = run_in(ns(node)?.path(), rtnetlink::new_connection)
            .and_then(|r| r)
            .map_err(|e| LabError::Namespace {
                node: node.into(),
                netns: ns(node)
                    .map(|n| n.path().display().to_string())
                    .unwrap_or_default(),
                message: format!("netlink socket: {e}"),
            })?;
        rt.spawn(conn);
        handles.insert(node, handle);
    }
    let h = |node: &str| handles[node].clone();

    rt.block_on(async {
        // Loopbacks up, bridges created (up).
        let mut first = Vec::new();
        for node in plan.nodes() {
            let handle = h(node);
            first.push(Box::pin(async move {
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(1).up().build())
                    .execute()
                    .await
                    .map_err(nl(node, "set lo up"))
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>);
        }
        for sw in &plan.switches {
            let handle = h(&sw.name);
            first.push(Box::pin(async move {
                // Multicast snooping off: with it on, the bridge joins the all-snoopers group
                // 224.0.0.106 when it comes up and floods IGMPv3 reports for it to every port,
                // twice in the first second, as noise in every capture after `lab up`. Off, the
                // bridge floods multicast like a plain hub, which is what a lab switch should do.
                let msg = LinkBridge::new(&sw.name)
                    .index(sw.ifindex)
                    .mcast_snooping(false)
                    .build();
                handle
                    .link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(nl(&sw.name, format!("create bridge {}", sw.name)))
            }));
        }
        try_join_all(first).await?;

        // veth pairs, from the first end's namespace; switch ends enslaved at creation.
        let bridge = |node: &str| {
            plan.switches
                .iter()
                .find(|s| s.name == node)
                .map(|s| s.ifindex)
        };
        try_join_all(
            plan.links
                .iter()
                .map(|l| create_link(l, h(&l.a.node), nss, bridge(&l.a.node))),
        )
        .await?;
        // The far end comes up once paired (veth_open refuses an unpaired peer with ENOTCONN);
        // a switch on the far end (switch-to-switch links) is enslaved in the same request.
        try_join_all(plan.links.iter().map(|l| {
            let handle = h(&l.b.node);
            let mut msg = LinkUnspec::new_with_index(l.b.ifindex).up();
            if l.b.kind == NodeKind::Switch {
                msg = msg.controller(bridge(&l.b.node).unwrap_or_default());
            }
            async move {
                handle
                    .link()
                    .set(msg.build())
                    .execute()
                    .await
                    .map_err(nl(&l.b.node, format!("set {} up", l.b.iface)))
            }
        }))
        .await?;

        try_join_all(
            plan.hosts
                .iter()
                .map(|host| address_host(host, h(&host.name))),
        )
        .await?;
        Ok::<(), LabError>(())
    })?;
    drop(handles);
    configure_rules(plan, nss)
}

/// Sets the hosts' sysctls and loads their firewalls, in namespaces whose interfaces and
/// addresses exist (built by [`configure`], or by Mininet).
pub fn configure_rules(plan: &Plan, nss: &HashMap<String, NetNs>) -> Result<(), LabError> {
    for host in plan.hosts.iter().filter(|h| !h.sysctls.is_empty()) {
        let pairs: Vec<(&str, &str)> = host
            .sysctls
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect();
        write_sysctls(namespace_of(nss, &host.name)?.path(), &pairs)
            .map_err(|e| sysctl_err(&host.name, &pairs, e))?;
    }
    apply_firewalls(plan, nss)
}

/// The error for the key of `pairs` that [`write_sysctls`] says failed.
fn sysctl_err(node: &str, pairs: &[(&str, &str)], (i, e): (usize, std::io::Error)) -> LabError {
    let (key, value) = pairs.get(i).copied().unwrap_or(("?", "?"));
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => "no such sysctl in this kernel".to_string(),
        _ => e.to_string(),
    };
    LabError::Sysctl {
        node: node.into(),
        key: key.into(),
        value: value.into(),
        message,
    }
}

async fn create_link(
    l: &LinkPlan,
    handle: Handle,
    nss: &HashMap<String, NetNs>,
    bridge: Option<u32>,
) -> Result<(), LabError> {
    let what = format!("create link {} <-> {}:{}", l.a.iface, l.b.node, l.b.iface);
    let peer_ns = nss
        .get(&l.b.node)
        .map(|n| n.file().as_raw_fd())
        .unwrap_or(-1);
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(l.b.iface.clone())
        .index(l.b.ifindex)
        .setns_by_fd(peer_ns);
    let mut msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(l.a.iface.clone())
        .index(l.a.ifindex)
        .up();
    if let Some(mtu) = l.mtu {
        peer = peer.mtu(mtu);
        msg = msg.mtu(mtu);
    }
    if let Some(mac) = l.b.mac.as_deref().and_then(mac_bytes) {
        peer = peer.address(mac);
    }
    if let Some(mac) = l.a.mac.as_deref().and_then(mac_bytes) {
        msg = msg.address(mac);
    }
    if let Some(idx) = bridge {
        msg = msg.controller(idx);
    }
    let msg = msg
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl(&l.a.node, what))
}

/// `aa:bb:cc:dd:ee:ff` (as resolve normalized it) as bytes.
fn mac_bytes(mac: &str) -> Option<Vec<u8>> {
    mac.split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

async fn address_host(host: &HostPlan, handle: Handle) -> Result<(), LabError> {
    for iface in &host.interfaces {
        for a in &iface.addresses {
            handle
                .address()
                .add(iface.ifindex, IpAddr::V4(a.addr), a.prefix)
                .execute()
                .await
                .map_err(nl(&host.name, format!("add address {a} to {}", iface.name)))?;
        }
    }
    for a in &host.loopback {
        handle
            .address()
            .add(1, IpAddr::V4(a.addr), a.prefix)
            .execute()
            .await
            .map_err(nl(&host.name, format!("add address {a} to lo")))?;
    }
    if let Some(gw) = host.default_route {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(nl(&host.name, format!("add default route via {gw}")))?;
    }
    Ok(())
}

/// Loads each host's iptables batch (one `iptables-restore` per host) and nft ruleset, all
/// hosts in parallel; a rejection names the host and the rule.
fn apply_firewalls(plan: &Plan, nss: &HashMap<String, NetNs>) -> Result<(), LabError> {
    let mut jobs = Vec::new();
    for host in &plan.hosts {
        if let Some(batch) = Plan::iptables_batch(host) {
            jobs.push((
                host,
                "iptables-restore",
                vec!["-w", "--noflush"],
                batch,
                true,
            ));
        }
        if let Some(nft) = &host.nft {
            jobs.push((host, "nft", vec!["-f", "-"], nft.clone(), false));
        }
    }
    let mut running = Vec::new();
    for (host, program, args, input, is_iptables) in jobs {
        let mut child = command_in(nss[&host.name].path(), program)
            .map_err(|e| LabError::io(nss[&host.name].path(), e))?
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| missing_or_spawn(&host.name, program, e))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        running.push((host, program, input, is_iptables, child));
    }
    let mut first_err = None;
    for (host, program, input, is_iptables, child) in running {
        let out = child
            .wait_with_output()
            .map_err(|e| missing_or_spawn(&host.name, program, e))?;
        if out.status.success() || first_err.is_some() {
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let rule = if is_iptables {
            failing_iptables_rule(host, &input, &stderr)
        } else {
            failing_nft_line(&input, &stderr)
        };
        first_err = Some(LabError::Firewall {
            node: host.name.clone(),
            rule,
            message: stderr.lines().next().unwrap_or("failed").to_string(),
        });
    }
    first_err.map_or(Ok(()), Err)
}

fn missing_or_spawn(node: &str, program: &str, e: std::io::Error) -> LabError {
    if e.kind() == std::io::ErrorKind::NotFound {
        let pkg = if program == "nft" {
            "nftables"
        } else {
            "iptables"
        };
        LabError::MissingTool {
            program: program.into(),
            fix: format!("run ci/setup.sh or apt-get install -y {pkg}"),
        }
    } else {
        LabError::Spawn {
            node: node.into(),
            command: program.into(),
            message: e.to_string(),
        }
    }
}

/// iptables-restore says `line N failed` (legacy) or `Error occurred at line: N` (nft): map N
/// back to the rule the user wrote.
fn failing_iptables_rule(host: &HostPlan, batch: &str, stderr: &str) -> String {
    let line_no = stderr.split("line").skip(1).find_map(|s| {
        let digits: String = s
            .trim_start_matches([':', ' '])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<usize>().ok()
    });
    let batch_line = line_no.and_then(|n| batch.lines().nth(n.saturating_sub(1)));
    match batch_line {
        Some(l) if l == "COMMIT" || l.starts_with('*') => {
            // iptables-nft fails at COMMIT: narrow down with what the message quotes
            // (`Chain 'NOSUCHTARGET' does not exist`), else name the table's rules.
            let table = batch
                .lines()
                .take(line_no.unwrap_or(1))
                .filter(|l| l.starts_with('*'))
                .last()
                .unwrap_or("*filter");
            let in_table: Vec<_> = host
                .iptables
                .iter()
                .filter(|r| format!("*{}", r.table) == table)
                .collect();
            let quoted: Vec<&str> = stderr
                .lines()
                .next()
                .unwrap_or("")
                .split('\'')
                .skip(1)
                .step_by(2)
                .collect();
            let named: Vec<_> = in_table
                .iter()
                .filter(|r| quoted.iter().any(|q| r.line.split(' ').any(|w| w == *q)))
                .collect();
            let pick = if named.is_empty() {
                in_table.iter().collect()
            } else {
                named
            };
            pick.iter()
                .map(|r| r.written.as_str())
                .collect::<Vec<_>>()
                .join("`, `")
        }
        Some(l) => host
            .iptables
            .iter()
            .find(|r| r.line == l)
            .map(|r| r.written.clone())
            .unwrap_or_else(|| l.to_string()),
        None => host
            .iptables
            .iter()
            .map(|r| r.written.as_str())
            .collect::<Vec<_>>()
            .join("`, `"),
    }
}

/// nft says `/dev/stdin:N:...`: show that line of the ruleset.
fn failing_nft_line(ruleset: &str, stderr: &str) -> String {
    stderr
        .split("/dev/stdin:")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| ruleset.lines().nth(n.saturating_sub(1)))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "nft ruleset".into())
}
