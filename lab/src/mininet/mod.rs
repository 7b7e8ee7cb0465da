//! The Mininet builder: a [`Plan`]'s hosts, switches, links, addresses and routes built by
//! Mininet 2.3 through its Python API ([`HELPER`], shipped in this binary), the way `mn` builds
//! its networks: each host a Mininet `Host` (a shell in a network namespace of its own), each
//! switch a `LinuxBridge` (or Open vSwitch in standalone mode) in the root namespace, each link
//! a Mininet `Link` (`TCLink` when it carries traffic control parameters).
//!
//! The lab then owns what Mininet built: the hosts' namespaces are bind-mounted under the
//! names the native builder uses (`ip netns exec lab-NAME-h1 …` works), Mininet's shells end,
//! and removal is exact, by the names recorded before Mininet created anything: the
//! switches' bridges and ports are the only things in the root namespace, all named
//! `m<tag>s<NN>[-ethN]` with a tag no interface on the machine had. Mininet's own cleanup
//! (`mn -c`) kills and deletes by pattern across the machine and is never used.

pub mod custom;

use crate::error::LabError;
use crate::resolve::{NodeKind, Plan};
use crate::state::{MininetRecord, ProcessId, SwitchKind};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The helper script (`python3 -c HELPER build|topo …`).
pub const HELPER: &str = include_str!("helper.py");

/// How long Mininet may take to build a lab before lab gives up on it.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Names the root-namespace bridges and ports for `plan` with a tag no interface on this
/// machine starts with.
pub fn record_for(plan: &Plan, switch: SwitchKind) -> Result<MininetRecord, LabError> {
    // Open vSwitch needs more than Mininet (its daemon and the kernel's datapath): refused
    // here, before anything exists. For lxbr the helper's own checks are enough.
    if switch == SwitchKind::Ovs {
        installed(switch).map_err(LabError::Mininet)?;
    }
    if plan.switches.len() > 99 {
        return Err(LabError::Mininet(format!(
            "{} switches: the Mininet builder names at most 99 per lab",
            plan.switches.len()
        )));
    }
    let existing: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| LabError::io(Path::new("/sys/class/net"), e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let tag = (0..64)
        .map(|_| format!("m{:04x}", random_u16()))
        .find(|t| !existing.iter().any(|n| n.starts_with(t.as_str())))
        .ok_or_else(|| LabError::Mininet("no free interface name tag".into()))?;
    let mut bridges = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for (i, sw) in plan.switches.iter().enumerate() {
        let bridge = format!("{tag}s{:02}", i + 1);
        if sw.ports.len() > 999 {
            return Err(LabError::Mininet(format!(
                "switch {}: {} ports (at most 999)",
                sw.name,
                sw.ports.len()
            )));
        }
        for (p, port) in sw.ports.iter().enumerate() {
            ports.insert(port.name.clone(), format!("{bridge}-eth{}", p + 1));
        }
        bridges.insert(sw.name.clone(), bridge);
    }
    Ok(MininetRecord {
        switch,
        bridges,
        ports,
        processes: vec![],
    })
}

/// The helper's build request for `plan`.
fn spec(record: &MininetRecord, plan: &Plan) -> serde_json::Value {
    let iface = |kind: NodeKind, name: &str| match kind {
        NodeKind::Switch => record.ports[name].clone(),
        NodeKind::Host => name.to_string(),
    };
    let node = |kind: NodeKind, name: &str| match kind {
        NodeKind::Switch => record.bridges[name].clone(),
        NodeKind::Host => name.to_string(),
    };
    serde_json::json!({
        "switch": record.switch.name(),
        "hosts": plan.hosts.iter().map(|h| serde_json::json!({
            "name": h.name,
            "ipv6": h.ipv6,
            "addresses": h.interfaces.iter().filter(|i| !i.addresses.is_empty()).map(|i| {
                (i.name.clone(), i.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            }).collect::<Vec<_>>(),
            "loopback": h.loopback.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "default_route": h.default_route.map(|g| g.to_string()),
        })).collect::<Vec<_>>(),
        "switches": plan.switches.iter().map(|s| serde_json::json!({
            "name": s.name,
            "bridge": record.bridges[&s.name],
        })).collect::<Vec<_>>(),
        "links": plan.links.iter().map(|l| serde_json::json!({
            "node1": node(l.a.kind, &l.a.node),
            "intf1": iface(l.a.kind, &l.a.iface),
            "node2": node(l.b.kind, &l.b.node),
            "intf2": iface(l.b.kind, &l.b.iface),
            "mtu": l.mtu,
            "tc": l.tc,
            "mac1": l.a.mac,
            "mac2": l.b.mac,
        })).collect::<Vec<_>>(),
    })
}

/// Whether Mininet can build labs with `switch` here; the reason and the fix when not.
pub fn installed(switch: SwitchKind) -> Result<(), String> {
    if version().is_none() {
        return Err(format!(
            "Mininet is not installed for {} (ci/setup.sh installs it)",
            python().display()
        ));
    }
    let tool = match switch {
        SwitchKind::Lxbr => ("brctl", "bridge-utils"),
        SwitchKind::Ovs => ("ovs-vsctl", "openvswitch-switch"),
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool.0).is_file()))
        || Path::new("/usr/sbin").join(tool.0).is_file();
    if !found {
        return Err(format!(
            "`{}` is missing for Mininet's {} switch (apt-get install {})",
            tool.0,
            switch.name(),
            tool.1
        ));
    }
    if switch == SwitchKind::Ovs && !kernel_has_openvswitch() {
        return Err("the kernel has no openvswitch module (Open vSwitch's datapath)".into());
    }
    Ok(())
}

/// Open vSwitch's kernel datapath: loaded, or a module the kernel could load.
fn kernel_has_openvswitch() -> bool {
    if Path::new("/sys/module/openvswitch").exists() {
        return true;
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules")
        .join(release)
        .join("kernel/net/openvswitch")
        .exists()
}

/// Mininet's version, as its Python package says; `None` when it (or its nodelib, where
/// LinuxBridge is) does not import.
pub fn version() -> Option<String> {
    let out = Command::new(python())
        .args([
            "-c",
            "import mininet.net, mininet.nodelib; print(mininet.net.VERSION)",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Python that has Mininet: `LAB_PYTHON`, else the system's (Debian's `mininet` package
/// installs into /usr/lib/python3/dist-packages, which a pyenv or venv python does not see).
pub fn python() -> std::path::PathBuf {
    match std::env::var_os("LAB_PYTHON") {
        Some(p) => p.into(),
        None if Path::new("/usr/bin/python3").exists() => "/usr/bin/python3".into(),
        None => "python3".into(),
    }
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u16::from_ne_bytes(b)
}

/// The running helper after a successful build: Mininet's shells still hold the namespaces.
pub struct Built {
    child: Child,
    stdin: ChildStdin,
    /// Host → the pid of its Mininet shell (its network namespace is `/proc/PID/ns/net`).
    pub hosts: HashMap<String, i32>,
    /// The helper and every Mininet shell.
    pub processes: Vec<ProcessId>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    hosts: HashMap<String, i32>,
    #[serde(default)]
    switches: HashMap<String, i32>,
}

/// Starts the helper and has Mininet build `plan` as `record` names it. `on_spawn` gets the
/// helper's identity at once (to be recorded before anything exists). The helper's stderr
/// goes to `log`.
pub fn build(
    plan: &Plan,
    record: &MininetRecord,
    log: &Path,
    on_spawn: impl FnOnce(ProcessId) -> Result<(), LabError>,
) -> Result<Built, LabError> {
    let err = std::fs::File::create(log).map_err(|e| LabError::io(log, e))?;
    let mut child = Command::new(python())
        .args(["-c", HELPER, "build"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LabError::MissingTool {
                program: "python3".into(),
                fix: "ci/setup.sh installs it with Mininet".into(),
            },
            _ => LabError::Mininet(format!("cannot start the helper: {e}")),
        })?;
    let helper = ProcessId::of(child.id() as i32).unwrap_or(ProcessId {
        pid: child.id() as i32,
        start_time: 0,
    });
    let kill = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if let Err(e) = on_spawn(helper) {
        kill(&mut child);
        return Err(e);
    }
    let (mut stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(i), Some(o)) => (i, o),
        _ => {
            kill(&mut child);
            return Err(LabError::Mininet("the helper has no pipes".into()));
        }
    };
    let request = format!("{}\n", spec(record, plan));
    if let Err(e) = stdin.write_all(request.as_bytes()) {
        kill(&mut child);
        return Err(LabError::Mininet(format!(
            "the helper did not take the topology: {e}"
        )));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(BUILD_TIMEOUT) {
        Ok(l) => l,
        Err(_) => {
            kill(&mut child);
            return Err(LabError::Mininet(format!(
                "Mininet did not finish building in {} s (its log: {})",
                BUILD_TIMEOUT.as_secs(),
                log.display()
            )));
        }
    };
    let reply: Reply = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(_) => {
            kill(&mut child);
            let last = std::fs::read_to_string(log)
                .ok()
                .and_then(|s| s.lines().last().map(str::to_string))
                .unwrap_or_else(|| "no output".into());
            return Err(LabError::Mininet(format!("the helper failed: {last}")));
        }
    };
    if let Some(e) = reply.error {
        let _ = child.wait();
        return Err(LabError::Mininet(e));
    }
    let mut processes = vec![helper];
    processes.extend(
        reply
            .hosts
            .values()
            .chain(reply.switches.values())
            .filter_map(|&pid| ProcessId::of(pid)),
    );
    Ok(Built {
        child,
        stdin,
        hosts: reply.hosts,
        processes,
    })
}

impl Built {
    /// Tells the helper it may end Mininet's shells (the namespaces are bind-mounted by now)
    /// and waits for it.
    pub fn release(mut self) {
        let _ = self.stdin.write_all(b"release\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// Waits (at most `timeout`) until none of the recorded switch ports is in the root namespace
/// any more, as happens once the hosts' namespaces, which hold their peers, are destroyed.
pub fn await_ports_gone(record: &MininetRecord, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while record
        .ports
        .values()
        .any(|p| Path::new("/sys/class/net").join(p).exists())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes this lab's bridges and ports from the root namespace, by their recorded names.
/// What is already gone is skipped; anything else that fails is returned.
pub fn remove_root(record: &MininetRecord) -> Vec<String> {
    let mut problems = Vec::new();
    if record.switch == SwitchKind::Ovs {
        for br in record.bridges.values() {
            match Command::new("ovs-vsctl")
                .args(["--if-exists", "del-br", br])
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => problems.push(format!(
                    "ovs-vsctl del-br {br}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => problems.push(format!("ovs-vsctl del-br {br}: {e}")),
            }
        }
    }
    let names: Vec<String> = record
        .ports
        .values()
        .chain(record.bridges.values())
        .cloned()
        .collect();
    match delete_links(&names) {
        Ok(p) => problems.extend(p),
        Err(e) => problems.push(format!("netlink in the root namespace: {e}")),
    }
    problems
}

/// Deletes the root namespace's links named `names` (one netlink request each; a veth takes
/// its peer with it).
fn delete_links(names: &[String]) -> std::io::Result<Vec<String>> {
    use futures::TryStreamExt;
    let present: Vec<&String> = names
        .iter()
        .filter(|n| Path::new("/sys/class/net").join(n).exists())
        .collect();
    if present.is_empty() {
        return Ok(vec![]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let mut problems = Vec::new();
        for name in present {
            let found = handle
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await;
            let index = match found {
                Ok(Some(m)) => m.header.index,
                _ => continue, // gone meanwhile (a port goes with its peer's namespace)
            };
            if let Err(e) = handle.link().del(index).execute().await {
                let gone = matches!(&e, rtnetlink::Error::NetlinkError(m)
                    if m.code.map(|c| -c.get()) == Some(libc::ENODEV));
                if !gone {
                    problems.push(format!("delete {name}: {e}"));
                }
            }
        }
        Ok(problems)
    })
}

/// Bind-mounts the network namespace of process `pid` at `path` (as `ip netns attach`).
pub fn attach_netns(pid: i32, path: &Path) -> Result<(), LabError> {
    use nix::mount::{MsFlags, mount};
    let dir = path.parent().unwrap_or(Path::new("/run/netns"));
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| LabError::io(path, e))?;
    let src = format!("/proc/{pid}/ns/net");
    mount(
        Some(src.as_str()),
        path,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| LabError::io(path, std::io::Error::from(e)))
}
