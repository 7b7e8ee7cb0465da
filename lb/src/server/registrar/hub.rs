//! What the registrar's tasks share: its settings, the [`Hub`] (registry, data paths,
//! connections, `lb ctl`'s control counters) behind [`Shared`], and [`apply`], the one way a backend change
//! reaches the data paths.

use crate::server::datapath::mailbox::{PathHandle, PathMsg};
use lb_core::config::{BackendEntry, CheckSection, ControlSection};
use lb_core::protocol::agent::Secret;
use lb_core::protocol::ctl::ControlCounters;
use lb_core::registry::{Registry, Update};
use lb_core::{BackendSpec, Nanos};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What the control plane needs.
pub struct ControlSettings {
    /// The VIP (refused as a backend address).
    pub vip: Ipv4Addr,
    /// Where agents register; none: no registration, only static backends.
    pub listen: Option<SocketAddrV4>,
    /// Timing and secret file.
    pub timing: ControlSection,
    /// The loaded secret.
    pub secret: Option<Secret>,
    /// Unregistered connections served at once.
    pub max_pending: usize,
    /// Registered backends at most.
    pub max_agents: usize,
    /// Active checks.
    pub check: CheckSection,
    /// Default drain deadline.
    pub drain_timeout: Duration,
    /// Source address of SANITY datagrams (the data path's).
    pub data_addr: Ipv4Addr,
    /// Destination port of SANITY datagrams (1337).
    pub encap_port: u16,
    /// One line describing the data path, for `lb ctl state`.
    pub description: String,
    /// The NFQUEUE numbers of the intake, for the metrics; none: packet intake.
    pub queues: Option<std::ops::Range<u16>>,
    /// Where `/metrics` is served over HTTP; none: only `lb ctl metrics`.
    pub metrics: Option<SocketAddrV4>,
    /// How backends are taken in at run time (`lb ctl add`); none: refused.
    pub admission: Option<Arc<dyn Admission>>,
}

/// How the server takes a static backend in at run time (`lb ctl add`) and lets one go
/// (`lb ctl remove`): the checks, MAC and routes a `--backend` gets at start.
pub trait Admission: Send + Sync {
    /// The backend's spec once checked and made reachable; why not, as one line.
    fn admit(&self, b: &BackendEntry) -> Result<BackendSpec, String>;
    /// Undoes what [`Admission::admit`] set up for address `addr`.
    fn release(&self, addr: Ipv4Addr);
}

pub(super) struct Conn {
    pub(super) kick: Option<oneshot::Sender<String>>,
}

/// A connection in its handshake: where it comes from, and how to end it early.
pub(super) struct PendingConn {
    pub(super) source: std::net::IpAddr,
    pub(super) abort: tokio::task::AbortHandle,
}

/// State shared by the control plane's tasks.
pub(super) struct Hub {
    pub(super) s: ControlSettings,
    pub(super) reg: Registry,
    pub(super) paths: Vec<PathHandle>,
    pub(super) conns: HashMap<u64, Conn>,
    pub(super) next_conn: u64,
    /// Connections still in their handshake, by id (oldest first), with their source.
    pub(super) pending: std::collections::BTreeMap<u64, PendingConn>,
    pub(super) udp: Option<std::net::UdpSocket>,
    pub(super) started: Nanos,
    pub(super) counters: ControlCounters,
}

pub(super) type Shared = Rc<RefCell<Hub>>;

/// Sends `updates` to every data path and waits until each has applied them.
pub(super) async fn apply(hub: &Shared, updates: Vec<Update>) {
    if updates.is_empty() {
        return;
    }
    for u in &updates {
        tracing::info!("backend change: {}", describe(u));
    }
    let waits: Vec<oneshot::Receiver<()>> = hub
        .borrow()
        .paths
        .iter()
        .filter_map(|p| {
            let (tx, rx) = oneshot::channel();
            (p.send(PathMsg::Apply(updates.clone())) && p.send(PathMsg::Sync(tx))).then_some(rx)
        })
        .collect();
    for w in waits {
        if tokio::time::timeout(Duration::from_secs(2), w)
            .await
            .is_err()
        {
            tracing::warn!("a data path did not confirm a backend change within 2s");
        }
    }
}

fn describe(u: &Update) -> String {
    match u {
        Update::Upsert(s) => format!("{} {} {:?} weight {}", s.name, s.addr, s.state, s.weight),
        Update::Remove(n) => format!("{n} removed"),
    }
}
