//! `lab doctor`: can this machine run labs? Each problem comes with the command that fixes it.
//! Probes that create devices run in a throw-away namespace (a thread that unshared its own),
//! so the root namespace is never touched.

use std::process::{Command, ExitCode, Stdio};

enum Level {
    Ok,
    Fail,
    Absent,
    Info,
}

struct Finding {
    level: Level,
    what: String,
    fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Fail,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// Something optional this machine lacks, and the command that adds it.
fn absent(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Absent,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// CapEff bits from /proc/self/status.
fn has_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// Runs `ip`/`tc` commands in a fresh anonymous network namespace; returns each one's result.
fn in_scratch_netns(cmds: &[&[&str]]) -> Result<Vec<Result<(), String>>, String> {
    let cmds: Vec<Vec<String>> = cmds
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        Ok(cmds
            .iter()
            .map(|c| {
                // A child forked from this thread inherits its namespace.
                let out = Command::new(&c[0])
                    .args(&c[1..])
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("{}: {e}", c[0]))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("failed")
                        .to_string())
                }
            })
            .collect())
    })
    .join()
    .map_err(|_| "probe thread panicked".to_string())?
}

fn tool_version(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// The probe the lab's impairment engine needs (an NFQUEUE rule on a bridge port).
const IMPAIR_PROBE: &str =
    "NFQUEUE rules on bridge ports (iptables NFQUEUE + physdev): the lab's impairment engine";

/// Which engine each link impairment will use on this machine.
fn impairment_finding(netem: bool, engine: bool, tbf: bool) -> Finding {
    let var = lab::impair::apply::ENGINE_VAR;
    let rate = if tbf {
        "rate: tbf"
    } else {
        "rate: none (no tbf)"
    };
    let what = match (netem, engine) {
        (true, true) => format!(
            "link impairments: netem for delay, jitter, loss, duplicate, reorder (and rate) without a seed; the lab's NFQUEUE engine for seeded ones (the simulator's drop pattern) and everything with {var}=nfqueue; {rate}"
        ),
        (false, true) => format!(
            "link impairments: no netem here: the lab's NFQUEUE engine applies delay, jitter, loss, duplicate and reorder (seeded: the simulator's drop pattern); {rate}"
        ),
        (true, false) => format!(
            "link impairments: netem only (seedless); seeded impairments fail: the engine's NFQUEUE rules are refused; {rate}"
        ),
        (false, false) => {
            return absent(
                "link impairments: neither netem nor the engine's NFQUEUE rules work: labs with impairments fail",
                "a kernel with NFQUEUE and physdev (or netem)",
            );
        }
    };
    Finding {
        level: Level::Info,
        what,
        fix: None,
    }
}

fn findings(rootless_failure: Option<String>) -> Vec<Finding> {
    let mut f = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    let (net_admin, sys_admin) = (has_cap(12), has_cap(21));
    f.push(mode_finding(rootless_failure.as_deref()));
    if root && net_admin && sys_admin {
        f.push(ok(if lab::rootless::in_initial_user_namespace() {
            "root, with CAP_NET_ADMIN and CAP_SYS_ADMIN"
        } else {
            "root inside a user namespace, with CAP_NET_ADMIN and CAP_SYS_ADMIN there"
        }));
    } else if rootless_failure.is_some() {
        // Said by the mode finding, with its fix.
    } else {
        f.push(fail(
            format!(
                "privileges: uid {}, CAP_NET_ADMIN {net_admin}, CAP_SYS_ADMIN {sys_admin}",
                nix::unistd::geteuid()
            ),
            "sudo lab ... (labs need root)",
        ));
    }
    let uname = nix::sys::utsname::uname().ok();
    let release = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    f.push(Finding {
        level: Level::Info,
        what: format!("kernel {release}"),
        fix: None,
    });

    if tool_version("ip", "-V").is_none() {
        f.push(fail(
            "iproute2 (`ip`) is missing",
            "apt-get install -y iproute2",
        ));
    } else if root {
        let probes: &[(&str, &[&str], &str)] = &[
            (
                "veth pairs",
                &[
                    "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
                ],
                "a kernel with CONFIG_VETH (modprobe veth)",
            ),
            (
                "Linux bridge",
                &["ip", "link", "add", "b0", "type", "bridge"],
                "a kernel with CONFIG_BRIDGE (modprobe bridge)",
            ),
        ];
        let optional: &[(&str, &[&str], &str)] = &[
            (
                "htb (tc qdisc htb: TCLink bw, --backend mininet)",
                &[
                    "tc", "qdisc", "add", "dev", "d0", "root", "handle", "5:", "htb", "default",
                    "1",
                ],
                "modprobe sch_htb, or a kernel with CONFIG_NET_SCH_HTB",
            ),
            (
                "tbf (tc qdisc tbf: TCLink bw with use_tbf, --backend mininet)",
                &[
                    "tc", "qdisc", "add", "dev", "d1", "root", "tbf", "rate", "10mbit", "burst",
                    "15k", "latency", "50ms",
                ],
                "modprobe sch_tbf, or a kernel with CONFIG_NET_SCH_TBF",
            ),
            (
                "netem (tc qdisc netem: delay/loss; TCLink delay, jitter, loss)",
                &[
                    "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                ],
                "modprobe sch_netem, or a kernel with CONFIG_NET_SCH_NETEM",
            ),
            (
                IMPAIR_PROBE,
                &[
                    "iptables",
                    "-w",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-m",
                    "physdev",
                    "--physdev-in",
                    "d0",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "40000",
                ],
                "a kernel with CONFIG_NETFILTER_XT_TARGET_NFQUEUE and CONFIG_NETFILTER_XT_MATCH_PHYSDEV \
                 (bridge netfilter), and iptables (ci/setup.sh)",
            ),
            (
                "IPIP tunnels",
                &[
                    "ip", "link", "add", "t0", "type", "ipip", "local", "10.9.9.1", "remote",
                    "10.9.9.2",
                ],
                "modprobe ipip, or a kernel with CONFIG_NET_IPIP",
            ),
            (
                "GRE tunnels",
                &[
                    "ip", "link", "add", "g0", "type", "gre", "local", "10.9.9.1", "remote",
                    "10.9.9.2",
                ],
                "modprobe ip_gre, or a kernel with CONFIG_NET_IPGRE",
            ),
            (
                "vxlan",
                &[
                    "ip", "link", "add", "v0", "type", "vxlan", "id", "1", "dstport", "4789",
                ],
                "modprobe vxlan",
            ),
            (
                "nft `queue` statement (CONFIG_NFT_QUEUE)",
                &[
                    "nft",
                    "add table ip labprobe; \
                     add chain ip labprobe c { type filter hook input priority 0; }; \
                     add rule ip labprobe c queue num 0 bypass",
                ],
                "modprobe nft_queue, or a kernel with CONFIG_NFT_QUEUE; meanwhile queue with \
                 iptables: `-j NFQUEUE --queue-num N` (what lb and the scenarios use)",
            ),
        ];
        let all: Vec<&[&str]> = probes.iter().chain(optional).map(|p| p.1).collect();
        match in_scratch_netns(&all) {
            Err(e) => f.push(fail(
                format!("network namespaces: {e}"),
                "a kernel with CONFIG_NET_NS, and root",
            )),
            Ok(results) => {
                f.push(ok("network namespaces"));
                let passed = |name: &str| {
                    probes
                        .iter()
                        .chain(optional)
                        .zip(&results)
                        .any(|(p, r)| p.0.starts_with(name) && r.is_ok())
                };
                let impair =
                    impairment_finding(passed("netem"), passed(IMPAIR_PROBE), passed("tbf"));
                for ((what, _, fix), r) in probes.iter().chain(optional).zip(results) {
                    let required = probes.iter().any(|p| p.0 == *what);
                    match (r, required) {
                        (Ok(()), _) => f.push(ok(*what)),
                        (Err(e), true) => f.push(fail(format!("{what}: {e}"), *fix)),
                        (Err(e), false) => f.push(absent(
                            format!("{what}: {e} (scenarios that need it skip, saying why)"),
                            *fix,
                        )),
                    }
                }
                f.push(impair);
            }
        }
    }
    for (what, path, fix) in [
        (
            "NFQUEUE (nfnetlink_queue)",
            "/proc/net/netfilter/nfnetlink_queue",
            "modprobe nfnetlink_queue",
        ),
        (
            "conntrack",
            "/proc/sys/net/netfilter/nf_conntrack_max",
            "modprobe nf_conntrack",
        ),
    ] {
        if std::path::Path::new(path).exists() {
            f.push(ok(what));
        } else {
            f.push(fail(format!("{what}: {path} is missing"), fix));
        }
    }
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        f.push(ok("IPVS"));
    } else {
        f.push(absent("IPVS: /proc/net/ip_vs is missing", "modprobe ip_vs"));
    }
    f.extend(mininet_findings());
    f.extend(rootless_findings(root));
    for (program, arg, package, required) in [
        ("iptables", "-V", "iptables", true),
        ("iptables-restore", "-V", "iptables", true),
        ("nft", "-v", "nftables", true),
        ("tcpdump", "--version", "tcpdump", false),
        ("conntrack", "-V", "conntrack", false),
        ("telnet", "-?", "telnet", false),
    ] {
        match tool_version(program, arg) {
            Some(v) => f.push(ok(format!("{program}: {v}"))),
            None if required => f.push(fail(
                format!("{program} is not installed"),
                format!("ci/setup.sh (or: apt-get install -y {package})"),
            )),
            None => f.push(absent(
                format!("{program} is not installed (optional)"),
                format!("ci/setup.sh (or: apt-get install -y {package})"),
            )),
        }
    }
    f
}

/// The Mininet backend (`--backend mininet`, `--custom`): optional, so only `absent` when
/// missing.
fn mininet_findings() -> Vec<Finding> {
    use lab::state::SwitchKind;
    let mut f = Vec::new();
    match lab::mininet::version() {
        Some(v) => f.push(ok(format!(
            "Mininet {v} ({}): --backend mininet, --custom FILE.py",
            lab::mininet::python().display()
        ))),
        None => {
            f.push(absent(
                format!(
                    "Mininet is not installed for {} (--backend mininet and --custom need it)",
                    lab::mininet::python().display()
                ),
                "ci/setup.sh (or: apt-get install -y mininet bridge-utils)",
            ));
            return f;
        }
    }
    for switch in [SwitchKind::Lxbr, SwitchKind::Ovs] {
        let what = match switch {
            SwitchKind::Lxbr => "Mininet switch lxbr (LinuxBridge, the default)",
            SwitchKind::Ovs => "Mininet switch ovs (Open vSwitch, standalone: --switch ovs)",
        };
        match lab::mininet::installed(switch) {
            Err(e) => f.push(absent(
                format!("{what}: {e}"),
                match switch {
                    SwitchKind::Lxbr => "ci/setup.sh (or: apt-get install -y bridge-utils)",
                    SwitchKind::Ovs => "apt-get install -y openvswitch-switch (a system daemon)",
                },
            )),
            Ok(()) if switch == SwitchKind::Ovs && !ovs_running() => f.push(absent(
                format!("{what}: ovs-vswitchd is not answering"),
                "systemctl start openvswitch-switch",
            )),
            Ok(()) => f.push(ok(what)),
        }
    }
    if std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1")
    {
        f.push(Finding {
            level: Level::Info,
            what: concat!(
                "net.bridge.bridge-nf-call-iptables = 1 in the root namespace: frames crossing ",
                "a Mininet switch (a root-namespace bridge) pass the root namespace's iptables ",
                "(lab's own switches turn this off in their namespaces)"
            )
            .into(),
            fix: None,
        });
    }
    f
}

/// Which mode this `lab` runs labs in, and where their state lives.
fn mode_finding(rootless_failure: Option<&str>) -> Finding {
    use lab::rootless::{Mode, entered_private, mode};
    let state = lab::state::state_dir();
    match (rootless_failure, mode()) {
        (Some(why), _) => fail(
            format!("mode: rootless (uid {}), but {why}", nix::unistd::getuid()),
            "allow user namespaces (the findings below), or run lab with sudo",
        ),
        (None, Mode::Root) => ok(format!(
            "mode: root: labs in the machine's namespaces, names under /run/netns, state in {}",
            state.display()
        )),
        (None, Mode::UserNamespace) if entered_private() => ok(format!(
            "mode: rootless: each lab lives in a user namespace of yours (with its own /run and \
             network namespace), state in {}, artifacts in {}",
            state.display(),
            lab::state::artifact_root().display()
        )),
        (None, _) => ok(format!(
            "mode: root inside a user namespace: labs live in it, state in {}",
            state.display()
        )),
    }
}

/// What an ordinary user needs for rootless labs: user namespaces allowed, and an unprivileged
/// `unshare --user --map-root-user --net` that works. As root these are facts about the
/// machine (`info` or `absent`); rootless, the mode finding above says whether they held.
fn rootless_findings(root: bool) -> Vec<Finding> {
    let mut f = vec![];
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|v| v.trim().to_string())
    };
    match read("/proc/sys/user/max_user_namespaces").as_deref() {
        Some("0") => f.push(absent(
            "user namespaces: user.max_user_namespaces = 0",
            "sysctl -w user.max_user_namespaces=15000",
        )),
        Some(n) => f.push(ok(format!(
            "user namespaces: user.max_user_namespaces = {n}"
        ))),
        None => f.push(absent(
            "user namespaces: the kernel has none (/proc/sys/user/max_user_namespaces)",
            "a kernel with CONFIG_USER_NS",
        )),
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        f.push(absent(
            "kernel.unprivileged_userns_clone = 0: ordinary users may not create user namespaces",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        ));
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        f.push(absent(
            "kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu): AppArmor denies \
             ordinary users' user namespaces capabilities",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile \
             with `userns,` for the lab binary",
        ));
    }
    let seccomp = read("/proc/self/status").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
    });
    if seccomp.as_deref() == Some("2") {
        f.push(Finding {
            level: Level::Info,
            what: "a seccomp filter is active (a container?): it may refuse unshare(CLONE_NEWUSER)"
                .into(),
            fix: None,
        });
    }
    if root && lab::rootless::in_initial_user_namespace() {
        // The real test: an ordinary user (nobody) becomes root of a new user namespace and
        // creates a network namespace and a veth pair in it; all of it vanishes on exit.
        let probe = {
            use std::os::unix::process::CommandExt;
            Command::new("unshare")
                .args(["--user", "--map-root-user", "--net", "--"])
                .args([
                    "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
                ])
                .uid(65534)
                .gid(65534)
                .stdin(Stdio::null())
                .output()
        };
        match probe {
            Ok(o) if o.status.success() => f.push(ok(
                "an ordinary user (nobody) can unshare a user and a network namespace and create a veth pair in it",
            )),
            Ok(o) => f.push(absent(
                format!(
                    "an ordinary user (nobody) cannot: unshare --user --map-root-user --net: {}",
                    String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("failed")
                ),
                "see the user namespace findings above",
            )),
            Err(e) => f.push(absent(
                format!("unshare (util-linux) could not run: {e}"),
                "apt-get install -y util-linux",
            )),
        }
    }
    f
}

fn ovs_running() -> bool {
    Command::new("ovs-vsctl")
        .args(["--timeout=2", "show"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Prints every finding; exit 1 if anything required is missing.
pub fn doctor(rootless_failure: Option<String>) -> ExitCode {
    println!("lab doctor: can this machine run labs?");
    let all = findings(rootless_failure);
    for x in &all {
        let tag = match x.level {
            Level::Ok => "ok    ",
            Level::Fail => "FAIL  ",
            Level::Absent => "absent",
            Level::Info => "info  ",
        };
        match &x.fix {
            Some(fix) => println!("  {tag} {}\n         fix: {fix}", x.what),
            None => println!("  {tag} {}", x.what),
        }
    }
    let failed = all
        .iter()
        .filter(|x| matches!(x.level, Level::Fail))
        .count();
    if failed == 0 {
        println!("ready: labs can run here");
        ExitCode::SUCCESS
    } else {
        println!("{failed} problem(s): run the fix commands above, then `lab doctor` again");
        ExitCode::from(1)
    }
}
