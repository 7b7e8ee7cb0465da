//! [`Lab`]: a deployed topology, its processes, and the guard that removes it.

use crate::capture::PacketSocket;
use crate::deploy;
use crate::error::LabError;
use crate::mininet;
use crate::netns;
use crate::remove;
use crate::resolve::Plan;
use crate::state::{
    NsRecord, ProcRecord, ProcessId, StateRecord, Status, SwitchKind, artifact_root, now_ms,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Namespace names are `<PREFIX>-<lab>-<node>`.
pub const PREFIX: &str = "lab";

/// The directory, in a lab's artifact directory, of the `/etc/hosts` and `/etc/resolv.conf`
/// bound for the commands it runs in its hosts ([`netns::host_command_in`]).
pub const ETC_DIR: &str = "etc";

/// `/etc/resolv.conf` for a lab's hosts: no resolver is reachable from them, so ask `lo`,
/// which refuses at once, instead of the machine's, which cannot answer.
pub const RESOLV_CONF: &str = "# No resolver is reachable from a lab host: lo refuses at once (written by lab).\n\
     nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

/// `/etc/hosts` for a lab's hosts: localhost, then every interface address of every host with
/// the host's name (addresses on `lo`, such as a DSR backend's VIP, are shared: left out).
pub fn hosts_file(plan: &Plan) -> String {
    let mut out = String::from(
        "# The lab's hosts, bound over /etc/hosts for what runs in them (written by lab).\n\
         127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for h in &plan.hosts {
        for a in h.interfaces.iter().flat_map(|i| &i.addresses) {
            out.push_str(&format!("{}\t{}\n", a.addr, h.name));
        }
    }
    out
}

/// How to bring a lab up.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Lab name; generated when `None`.
    pub name: Option<String>,
    /// Keep the lab when this process exits (`lab up`): no owner, removed only by `lab down`
    /// or `lab clean --all`.
    pub persistent: bool,
    /// Who builds the network.
    pub builder: Builder,
}

/// Who builds a lab's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Builder {
    /// lab itself: a namespace per host and per switch, over netlink.
    #[default]
    Native,
    /// Mininet 2.3 through its Python API, with this switch ([`crate::mininet`]).
    Mininet(SwitchKind),
}

/// A running lab. Dropping it removes the lab (unless it was [`detach`](Lab::detach)ed or
/// [`attach`](Lab::attach)ed).
pub struct Lab {
    record: StateRecord,
    children: Vec<Child>,
    remove_on_drop: bool,
}

/// A background process started in a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Identity (pid + start time).
    pub id: ProcessId,
    /// Host it runs in.
    pub host: String,
    /// Name given at start.
    pub name: String,
    /// stdout+stderr log.
    pub log: PathBuf,
}

/// True when running as root (the lab needs CAP_SYS_ADMIN and CAP_NET_ADMIN).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn valid_lab_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=24).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn generated_name() -> String {
    let mut bytes = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    let n = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) ^ std::process::id();
    format!("{:06x}", n & 0xff_ffff)
}

impl Lab {
    /// Deploys `plan` as a new lab. On any failure everything created so far is removed and
    /// the error names the node, link or rule that failed.
    pub fn up(mut plan: Plan, opts: &LabOptions) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        if crate::rootless::mode() == crate::rootless::Mode::UserNamespace
            && std::env::var_os("LAB_STATE_DIR").is_none()
        {
            return Err(LabError::Rootless(
                "inside a user namespace lab did not make, set LAB_STATE_DIR and LAB_ARTIFACTS to directories of yours (run `lab` as yourself instead: it makes its own)".into(),
            ));
        }
        let name = match &opts.name {
            Some(n) if !valid_lab_name(n) => return Err(LabError::BadName(n.clone())),
            Some(n) => n.clone(),
            None => generated_name(),
        };
        let mininet = match opts.builder {
            Builder::Native => {
                // Mininet's TCLink parameters become impairments, which the lab applies.
                for l in plan.links.iter_mut() {
                    l.impair = crate::impair::tclink::of_link(l).map_err(LabError::Unsupported)?;
                }
                None
            }
            Builder::Mininet(switch) => {
                if let Some(l) = plan.links.iter().find(|l| l.impair.is_some()) {
                    return Err(LabError::Unsupported(format!(
                        "link {} <-> {}: impairments are applied by lab's own engine, on native labs only (Mininet's switches live in the root namespace, where the engine's rules may not go): use --backend native, or Mininet's tc = {{ delay = …, loss = … }} where the kernel has netem",
                        l.a.iface, l.b.iface
                    )));
                }
                Some(mininet::record_for(&plan, switch)?)
            }
        };
        // Mininet's switches live in the root namespace: only hosts have namespaces then.
        let nodes: Vec<&str> = match mininet {
            None => plan.nodes().collect(),
            Some(_) => plan.hosts.iter().map(|h| h.name.as_str()).collect(),
        };
        let namespaces = nodes
            .into_iter()
            .map(|node| NsRecord {
                node: node.to_string(),
                netns: format!("{PREFIX}-{name}-{node}"),
            })
            .collect();
        let record = StateRecord {
            artifact_dir: artifact_root().join(&name),
            name,
            owner: if opts.persistent {
                None
            } else {
                Some(ProcessId::current())
            },
            creator: Some(ProcessId::current()),
            created_ms: now_ms(),
            status: Status::Creating,
            namespaces,
            processes: vec![],
            plan,
            mininet,
            userns: crate::rootless::userns_record(),
        };
        // The record lists every namespace before the first one exists.
        record.create()?;
        // A rootless holder started for this lab is named by the record now: it may outlive us.
        crate::rootless::commit_holder();
        let mut lab = Lab {
            record,
            children: vec![],
            remove_on_drop: true,
        };
        let t0 = std::time::Instant::now();
        if lab.record.mininet.is_some() {
            std::fs::create_dir_all(&lab.record.artifact_dir)
                .map_err(|e| LabError::io(&lab.record.artifact_dir, e))?;
            lab.build_with_mininet()?;
        } else {
            let nss = deploy::create_namespaces(&lab.record.namespaces)?;
            tracing::debug!(lab = %lab.name(), ms = t0.elapsed().as_secs_f64() * 1e3, "namespaces created");
            deploy::configure(&lab.record.plan, &nss)?;
        }
        tracing::debug!(lab = %lab.name(), ms = t0.elapsed().as_secs_f64() * 1e3, "configured");
        std::fs::create_dir_all(&lab.record.artifact_dir)
            .map_err(|e| LabError::io(&lab.record.artifact_dir, e))?;
        let etc = lab.record.artifact_dir.join(ETC_DIR);
        std::fs::create_dir_all(&etc).map_err(|e| LabError::io(&etc, e))?;
        for (file, text) in [
            ("hosts", hosts_file(&lab.record.plan)),
            ("resolv.conf", RESOLV_CONF.to_string()),
        ] {
            let path = etc.join(file);
            std::fs::write(&path, text).map_err(|e| LabError::io(&path, e))?;
        }
        crate::impair::apply::start_all(&mut lab)?;
        lab.record.status = Status::Up;
        lab.record.save()?;
        Ok(lab)
    }

    /// Mininet builds the network; its hosts' namespaces get the lab's names; lab sets the
    /// sysctls and loads the firewalls as for a native lab; Mininet's shells end.
    fn build_with_mininet(&mut self) -> Result<(), LabError> {
        let plan = self.record.plan.clone();
        let Some(rec) = self.record.mininet.clone() else {
            return Ok(());
        };
        let log = self.record.artifact_dir.join("mininet.log");
        let record = &mut self.record;
        let built = mininet::build(&plan, &rec, &log, |helper| {
            if let Some(m) = record.mininet.as_mut() {
                m.processes.push(helper);
            }
            record.save()
        })?;
        if let Some(m) = self.record.mininet.as_mut() {
            m.processes = built.processes.clone();
        }
        self.record.save()?;
        let mut nss = std::collections::HashMap::new();
        for ns in &self.record.namespaces {
            let pid = built.hosts.get(&ns.node).copied().ok_or_else(|| {
                LabError::Mininet(format!("Mininet did not report host {}", ns.node))
            })?;
            mininet::attach_netns(pid, &ns.path())?;
            let handle = netns_rs::NetNs::get(&ns.netns).map_err(|e| LabError::Namespace {
                node: ns.node.clone(),
                netns: ns.netns.clone(),
                message: e.to_string(),
            })?;
            nss.insert(ns.node.clone(), handle);
        }
        deploy::configure_rules(&plan, &nss)?;
        built.release();
        if let Some(m) = self.record.mininet.as_mut() {
            m.processes.retain(|p| p.alive());
        }
        self.record.save()
    }

    /// Opens an existing lab by name without taking ownership: dropping it removes nothing.
    pub fn attach(name: &str) -> Result<Lab, LabError> {
        Ok(Lab {
            record: StateRecord::load(name)?,
            children: vec![],
            remove_on_drop: false,
        })
    }

    /// Opens the lab named `name`, or the only lab when `name` is `None`.
    pub fn attach_or_only(name: Option<&str>) -> Result<Lab, LabError> {
        if let Some(n) = name {
            return Self::attach(n);
        }
        let names: Vec<String> = StateRecord::all()
            .into_iter()
            .filter_map(|r| r.ok())
            .map(|r| r.name)
            .collect();
        match names.as_slice() {
            [one] => Self::attach(one),
            [] => Err(LabError::Ambiguous(
                "no lab is up (start one with `lab up`)".into(),
            )),
            many => Err(LabError::Ambiguous(format!(
                "{} labs are up ({}): choose one with --lab NAME",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// Keeps the lab after this value is dropped; returns its name.
    pub fn detach(mut self) -> String {
        self.remove_on_drop = false;
        self.record.name.clone()
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The resolved topology.
    pub fn plan(&self) -> &Plan {
        &self.record.plan
    }

    /// Replaces the resolved topology (a link's impairments changed) and saves the record.
    pub fn set_plan(&mut self, plan: Plan) -> Result<(), LabError> {
        self.record.plan = plan;
        self.record.save()
    }

    /// The background processes the record lists.
    pub fn processes(&self) -> Vec<Process> {
        self.record
            .processes
            .iter()
            .map(|r| Process {
                id: r.id,
                host: r.host.clone(),
                name: r.name.clone(),
                log: r.log.clone(),
            })
            .collect()
    }

    /// The state record.
    pub fn record(&self) -> &StateRecord {
        &self.record
    }

    /// Where logs, pcaps and traces go.
    pub fn artifact_dir(&self) -> &Path {
        &self.record.artifact_dir
    }

    /// The namespace path of a node (`/run/netns/lab-NAME-h1`), usable with `ip netns exec`.
    pub fn netns_path(&self, node: &str) -> Result<PathBuf, LabError> {
        self.record
            .namespaces
            .iter()
            .find(|n| n.node == node)
            .map(NsRecord::path)
            .ok_or_else(|| match self.mininet_bridge(node) {
                Some(bridge) => LabError::RootSwitch {
                    node: node.to_string(),
                    bridge: bridge.to_string(),
                },
                None => LabError::NoSuchNode {
                    lab: self.record.name.clone(),
                    node: node.to_string(),
                    known: self
                        .record
                        .namespaces
                        .iter()
                        .map(|n| n.node.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })
    }

    /// A packet socket on `node`'s interface `iface` (every interface when `None`), opened
    /// inside the node's namespace. A switch Mininet built lives in the root namespace: its
    /// bridge or one of its ports is captured there (read only, by the recorded name), and
    /// "every interface" is refused, since there it would be the whole machine's.
    pub fn capture_socket(&self, node: &str, iface: Option<&str>) -> Result<PacketSocket, String> {
        if let Some(m) = &self.record.mininet
            && let Some(bridge) = m.bridges.get(node)
        {
            let root = match iface {
                None => None,
                Some(i) if i == node => Some(bridge),
                Some(i) => m.ports.get(i),
            };
            let Some(root) = root else {
                return Err(format!(
                    "{node} is a Mininet switch in the root namespace: capture one of its ports ({node}:eth1, …) or its bridge ({node}:{node})"
                ));
            };
            return PacketSocket::open(Some(root)).map_err(|e| e.to_string());
        }
        self.run_in(node, || PacketSocket::open(iface))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The root-namespace bridge of `node` when it is a switch Mininet built.
    fn mininet_bridge(&self, node: &str) -> Option<&str> {
        let m = self.record.mininet.as_ref()?;
        m.bridges.get(node).map(String::as_str)
    }

    /// Runs `f` on this thread inside `node`'s namespace. Sockets created in `f` stay there.
    pub fn run_in<T>(&self, node: &str, f: impl FnOnce() -> T) -> Result<T, LabError> {
        let path = self.netns_path(node)?;
        netns::run_in(&path, f).map_err(|e| LabError::Namespace {
            node: node.into(),
            netns: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// A command that runs inside `node` (foreground; the caller waits for it), with the host
    /// name `node` (a UTS namespace of its own: `hostname` says `h2`).
    pub fn command(&self, node: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
        let path = self.netns_path(node)?;
        let etc = self.record.artifact_dir.join(ETC_DIR);
        netns::host_command_in(&path, node, Some(&etc), program).map_err(|e| LabError::io(&path, e))
    }

    /// Starts a background process in `host`, stdout and stderr to `<artifacts>/<host>-<name>.log`.
    /// It runs in its own process group, is recorded, and is stopped at teardown.
    pub fn spawn<S: AsRef<OsStr>>(
        &mut self,
        host: &str,
        name: &str,
        argv: &[S],
    ) -> Result<Process, LabError> {
        let shown = argv
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        let Some(program) = argv.first() else {
            return Err(LabError::Spawn {
                node: host.into(),
                command: String::new(),
                message: "empty command".into(),
            });
        };
        let log = self.record.artifact_dir.join(format!("{host}-{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(&log, e))?;
        let mut cmd = self.command(host, program)?;
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::Spawn {
                node: host.into(),
                command: shown.join(" "),
                message: e.to_string(),
            })?;
        let id = ProcessId::of(child.id() as i32).unwrap_or(ProcessId {
            pid: child.id() as i32,
            start_time: 0,
        });
        self.children.push(child);
        self.record.processes.push(ProcRecord {
            id,
            host: host.into(),
            name: name.into(),
            argv: shown,
            log: log.clone(),
        });
        self.record.save()?;
        Ok(Process {
            id,
            host: host.into(),
            name: name.into(),
            log,
        })
    }

    /// Stops a background process (SIGTERM, then SIGKILL) and forgets it.
    pub fn stop(&mut self, p: &Process) -> Result<(), LabError> {
        remove::stop_process(p.id);
        self.reap();
        self.record.processes.retain(|r| r.id != p.id);
        self.record.save()
    }

    /// The exit status of a background process once it has ended (it is reaped then);
    /// `None` while it runs, or when it is not a child of this `Lab` value.
    pub fn exit_status(&mut self, p: &Process) -> Option<std::process::ExitStatus> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() as i32 == p.id.pid)?;
        child.try_wait().ok().flatten()
    }

    fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    /// Removes the lab now: stops its processes, deletes its namespaces and record.
    pub fn down(mut self) -> Result<(), LabError> {
        self.remove_on_drop = false;
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        let r = remove::remove(&mut self.record);
        for c in &mut self.children {
            let _ = c.wait();
        }
        r
    }
}

impl crate::impair::apply::Target for Lab {
    fn plan(&self) -> &Plan {
        &self.record.plan
    }

    fn set_plan(&mut self, plan: Plan) -> Result<(), LabError> {
        Lab::set_plan(self, plan)
    }

    fn command(&self, node: &str, program: &str) -> Result<Command, LabError> {
        Lab::command(self, node, program)
    }

    fn netns_path(&self, node: &str) -> Result<PathBuf, LabError> {
        Lab::netns_path(self, node)
    }

    fn run_in<T>(&self, node: &str, f: impl FnOnce() -> T) -> Result<T, LabError> {
        Lab::run_in(self, node, f)
    }

    fn start(
        &mut self,
        node: &str,
        name: &str,
        argv: &[String],
    ) -> Result<(ProcessId, PathBuf), LabError> {
        self.spawn(node, name, argv).map(|p| (p.id, p.log))
    }

    fn stop(&mut self, node: &str, name: &str) -> Result<bool, LabError> {
        let found = self
            .processes()
            .into_iter()
            .find(|p| p.host == node && p.name == name);
        match found {
            Some(p) => Lab::stop(self, &p).map(|()| true),
            None => Ok(false),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.remove_on_drop
            && let Err(e) = self.teardown()
        {
            tracing::error!("{e}");
        }
    }
}

/// Removes a lab by name from its record (`lab down NAME`), whoever created it.
pub fn down(name: &str) -> Result<(), LabError> {
    remove::remove(&mut StateRecord::load(name)?)
}
