//! Route netlink in the balancer's own namespace: which interface holds the VIP's subnet, the VIP
//! as a /32, interface MACs and neighbour (ARP) entries. One short-lived connection per call on a
//! current-thread runtime: these run at start, at stop and when a backend's MAC is unknown.

use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use lb_core::MacAddr;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::{Handle, LinkUnspec};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// An IPv4 address configured on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub ifname: String,
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl IfAddr {
    /// True if `ip` is inside this address's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p.min(32))),
        };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

pub(crate) fn block_on<F: Future<Output = Result<T>>, T>(f: impl FnOnce(Handle) -> F) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().context("route netlink socket")?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

async fn link_names(handle: &Handle) -> Result<Vec<(u32, String, Option<MacAddr>)>> {
    let mut links = handle.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = links.try_next().await.context("list links")? {
        let mut name = String::new();
        let mut mac = None;
        for a in &msg.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(bytes) => mac = mac_of(bytes),
                _ => {}
            }
        }
        out.push((msg.header.index, name, mac));
    }
    Ok(out)
}

/// Every IPv4 address of every interface.
pub fn addresses() -> Result<Vec<IfAddr>> {
    block_on(|handle| async move {
        let links = link_names(&handle).await?;
        let mut stream = handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = stream.try_next().await.context("list addresses")? {
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
            let Some(addr) = addr else { continue };
            let ifname = links
                .iter()
                .find(|l| l.0 == msg.header.index)
                .map(|l| l.1.clone())
                .unwrap_or_default();
            out.push(IfAddr {
                ifindex: msg.header.index,
                ifname,
                addr,
                prefix: msg.header.prefix_len,
            });
        }
        Ok(out)
    })
}

/// The interface a VIP belongs on, among `all` (this host's addresses): the one whose subnet
/// (not a /32) holds it. With `name`, that interface, which must exist and carry an IPv4
/// address. Like Caplance, none or several candidates are an error (the configuration's: the
/// message says what to give).
pub fn vip_interface(all: &[IfAddr], vip: Ipv4Addr, name: Option<&str>) -> Result<IfAddr, String> {
    if let Some(name) = name {
        return all
            .iter()
            .find(|a| a.ifname == name && a.prefix < 32)
            .cloned()
            .ok_or_else(|| format!("interface {name}: no such interface with an IPv4 subnet"));
    }
    let mut hits: Vec<&IfAddr> = all
        .iter()
        .filter(|a| a.prefix < 32 && a.ifname != "lo" && a.contains(vip))
        .collect();
    hits.dedup_by(|a, b| a.ifindex == b.ifindex);
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no interface has a subnet holding the VIP {vip}: give one with --interface, or add an address in the VIP's subnet"
        )),
        _ => Err(format!(
            "several interfaces have a subnet holding the VIP {vip} ({}): choose one with --interface",
            hits.iter()
                .map(|h| h.ifname.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Adds `addr/32` to interface `ifindex`. Already present counts as success (a restart after a
/// crash); returns whether it was added now.
pub fn add_host_address(ifindex: u32, addr: Ipv4Addr) -> Result<bool> {
    block_on(|handle| async move {
        match handle
            .address()
            .add(ifindex, IpAddr::V4(addr), 32)
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| -c.get()) == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow!("add {addr}/32 to interface {ifindex}: {e}")),
        }
    })
}

/// Removes `addr/32` from interface `ifindex`; absent counts as success.
pub fn del_host_address(ifindex: u32, addr: Ipv4Addr) -> Result<()> {
    block_on(|handle| async move {
        let mut stream = handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(IpAddr::V4(addr))
            .execute();
        let mut found: Vec<AddressMessage> = Vec::new();
        while let Some(msg) = stream.try_next().await.context("list addresses")? {
            if msg.header.prefix_len == 32 {
                found.push(msg);
            }
        }
        for msg in found {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .with_context(|| format!("remove {addr}/32 from interface {ifindex}"))?;
        }
        Ok(())
    })
}

/// The MAC address of interface `ifindex`.
pub fn link_mac(ifindex: u32) -> Result<MacAddr> {
    block_on(|handle| async move {
        let links = link_names(&handle).await?;
        links
            .into_iter()
            .find(|l| l.0 == ifindex)
            .and_then(|l| l.2)
            .ok_or_else(|| anyhow!("interface {ifindex} has no Ethernet address"))
    })
}

/// Sets interface `ifindex` up (used for `lo` by the agent).
pub fn link_up(ifindex: u32) -> Result<()> {
    block_on(|handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_index(ifindex).up().build())
            .execute()
            .await
            .with_context(|| format!("set interface {ifindex} up"))
    })
}

/// Six bytes as a MAC address; anything else is not one.
fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

/// The usable (not incomplete or failed) neighbour entry for `ip` on `ifindex`.
async fn neighbour(handle: &Handle, ifindex: u32, ip: Ipv4Addr) -> Result<Option<MacAddr>> {
    let mut stream = handle.neighbours().get().execute();
    while let Some(msg) = stream.try_next().await.context("list neighbours")? {
        if msg.header.ifindex != ifindex
            || matches!(
                msg.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            )
        {
            continue;
        }
        let mut dst = None;
        let mut lladdr = None;
        for a in &msg.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => dst = Some(*d),
                NeighbourAttribute::LinkLayerAddress(b) => lladdr = mac_of(b),
                _ => {}
            }
        }
        if dst == Some(ip) {
            return Ok(lladdr);
        }
    }
    Ok(None)
}

/// The MAC of on-link neighbour `ip` on interface `ifindex`: from the neighbour table, or, when
/// missing, after making the kernel resolve it (a datagram to the discard port triggers ARP).
/// One netlink connection serves the whole wait.
pub fn resolve_mac(ifindex: u32, ip: Ipv4Addr, timeout: Duration) -> Result<MacAddr> {
    block_on(|handle| async move {
        if let Some(mac) = neighbour(&handle, ifindex, ip).await? {
            return Ok(mac);
        }
        let probe = UdpSocket::bind("0.0.0.0:0").context("probe socket")?;
        let deadline = Instant::now() + timeout;
        let mut next_probe = Instant::now();
        loop {
            if Instant::now() >= next_probe {
                // Errors (EHOSTUNREACH after a failed ARP round) only mean "not yet".
                let _ = probe.send_to(b"", (ip, 9));
                next_probe = Instant::now() + Duration::from_millis(300);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(mac) = neighbour(&handle, ifindex, ip).await? {
                return Ok(mac);
            }
            if Instant::now() >= deadline {
                bail!("backend {ip}: no ARP answer within {timeout:?} (is it on the same LAN?)");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_membership() {
        let a = IfAddr {
            ifindex: 2,
            ifname: "eth0".into(),
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 24,
        };
        assert!(a.contains(Ipv4Addr::new(10, 0, 0, 50)));
        assert!(!a.contains(Ipv4Addr::new(10, 0, 1, 50)));
        let any = IfAddr {
            prefix: 0,
            ..a.clone()
        };
        assert!(any.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
