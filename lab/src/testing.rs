//! Test helpers shared by the workspace's crates (behind the `testing` feature, as s2n-quic-core
//! exports its own): the privileged-test gate (`LAB_REQUIRE_PRIVILEGED`), tool checks, and
//! throw-away network namespaces on a thread of their own.

use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// True when privileged tests can run. Prints why not and returns false, unless
/// `LAB_REQUIRE_PRIVILEGED=1`, where missing privileges fail the test instead.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // An ordinary user's test binary enters a user namespace before main
    // (`lab::rootless_test_binary!`); here it did not, or could not.
    let reason = match crate::rootless::test_failure() {
        Some(why) => format!("needs root or a user namespace, and entering one failed: {why}"),
        None => "needs root, or a user namespace: this test binary does not enter one (LAB_ROOTLESS=0, or no `lab::rootless_test_binary!()`)".to_string(),
    };
    if std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and LAB_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    eprintln!("SKIP {test}: {reason}; set LAB_REQUIRE_PRIVILEGED=1 to fail instead");
    false
}

/// True when `uid` exists in this process's user namespace (always, in the machine's first
/// one; a rootless run's maps only uid 0, the user itself).
pub fn uid_mapped(uid: u32) -> bool {
    crate::rootless::uid_map().is_some_and(|map| {
        map.iter()
            .any(|[inside, _, count]| (*inside..inside + count).contains(&u64::from(uid)))
    })
}

/// A command for `tcpdump` reading a file. tcpdump started as root switches to the user
/// `tcpdump`, which a rootless run's user namespace (one uid) does not have, and stops; there
/// it runs as uid 65534 of a nested user namespace instead (`unshare --map-user`), where it
/// stays who it is.
pub fn tcpdump_reader(tcpdump: &std::path::Path) -> Command {
    let tcpdump_user = nix::unistd::User::from_name("tcpdump").ok().flatten();
    if crate::rootless::mode() == crate::rootless::Mode::UserNamespace
        && tcpdump_user.is_some_and(|u| !uid_mapped(u.uid.as_raw()))
    {
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-user=65534", "--map-group=65534", "--"])
            .arg(tcpdump);
        cmd
    } else {
        Command::new(tcpdump)
    }
}

/// Returns the path of `tool` when it is installed; otherwise prints why `test` skips.
pub fn tool(test: &str, tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIP {test}: `{tool}` is not installed (apt-get install -y {tool})");
    }
    found
}

/// Root and `tool` installed; a missing tool skips locally but fails where privileged tests
/// are required (CI installs it with ci/setup.sh).
pub fn privileged_with(test: &str, tool: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if self::tool(test, tool).is_some() {
        return true;
    }
    assert_ne!(
        std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref(),
        Ok("1"),
        "{test}: `{tool}` is required (ci/setup.sh installs it)"
    );
    false
}

/// Namespaces of lab `name` that exist under /run/netns.
pub fn namespaces_of(name: &str) -> Vec<String> {
    let prefix = format!("{}-{name}-", crate::lab::PREFIX);
    std::fs::read_dir(crate::state::NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The root namespace, to compare before and after a test: links (names and flags),
/// addresses, routes of every table, policy rules, the iptables and ip6tables rules and the nft
/// ruleset. A firewall tool that is not installed shows as such (and fails under
/// `LAB_REQUIRE_PRIVILEGED=1`, where ci/setup.sh has installed it).
pub fn root_namespace_state() -> String {
    let mut out = String::new();
    let runs: [&[&str]; 7] = [
        &["ip", "-o", "link"],
        &["ip", "-o", "addr"],
        &["ip", "route", "show", "table", "all"],
        &["ip", "rule"],
        &["iptables-save"],
        &["ip6tables-save"],
        &["nft", "list", "ruleset"],
    ];
    for argv in runs {
        out.push_str(&format!("## {}\n", argv.join(" ")));
        let o = match Command::new(argv[0]).args(&argv[1..]).output() {
            Ok(o) => o,
            Err(e) if argv[0] != "ip" && e.kind() == std::io::ErrorKind::NotFound => {
                assert_ne!(
                    std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref(),
                    Ok("1"),
                    "`{}` is required (ci/setup.sh installs it)",
                    argv[0]
                );
                out.push_str("not installed\n");
                continue;
            }
            Err(e) => panic!("{}: {e}", argv[0]),
        };
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            // Link lines carry counters and qdisc state of nothing a test creates;
            // iptables-save stamps the time in comments.
            if !l.starts_with('#') {
                out.push_str(l.split(" qdisc").next().unwrap_or(l));
                out.push('\n');
            }
        }
    }
    out
}

static ROOT_NAMESPACE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by a test that compares the root namespace before and after, by one that changes it
/// for a while (a Mininet lab's switch ports), and by one that runs `lab clean` (which removes
/// every orphaned lab, another test's half-built one included): such tests of one binary run
/// one at a time.
pub fn root_namespace_lock() -> std::sync::MutexGuard<'static, ()> {
    ROOT_NAMESPACE.lock().unwrap_or_else(|e| e.into_inner())
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in its own anonymous network namespace (`unshare(CLONE_NEWNET)`).
///
/// Closures given to [`NsThread::run`] execute on it, so sockets and child processes they
/// create belong to the namespace. The namespace vanishes when the thread ends and the last
/// socket opened in it is closed, so a test leaves nothing behind, pass or fail.
pub struct NsThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// `/proc/<pid>/task/<tid>/ns/net`, for `ip link ... netns PATH`.
    pub ns_path: String,
}

// `new` creates a namespace and a thread: a `Default` would hide that.
#[allow(clippy::new_without_default)]
impl NsThread {
    /// Starts the thread and its namespace, with `lo` up.
    pub fn new() -> Self {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (path_tx, path_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            let path = format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            );
            path_tx.send(path).expect("send ns path");
            for job in jobs_rx {
                job();
            }
        });
        let ns_path = path_rx
            .recv()
            .expect("namespace thread died before unshare");
        let ns = Self {
            jobs: Some(jobs_tx),
            thread: Some(thread),
            ns_path,
        };
        ns.run(|| sh("ip link set lo up"));
        ns
    }

    /// Runs `f` inside the namespace and returns its result; a panic in `f` panics here.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        self.jobs
            .as_ref()
            .expect("jobs")
            .send(job)
            .expect("namespace thread is gone");
        match rx.recv().expect("namespace thread is gone") {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a shell-free command line (split on spaces) and panics with its stderr on failure.
pub fn sh(cmdline: &str) {
    let mut parts = cmdline.split_whitespace();
    let prog = parts.next().expect("empty command");
    let out = Command::new(prog)
        .args(parts)
        .output()
        .unwrap_or_else(|e| panic!("{cmdline}: {e}"));
    assert!(
        out.status.success(),
        "{cmdline}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

const MAC_A: &str = "02:00:00:00:00:03";
const MAC_B: &str = "02:00:00:00:00:02";

/// Two namespaces joined by a veth pair: `a` (veth-a, 10.0.0.3/24) and `b` (veth-b, 10.0.0.2/24).
///
/// Neighbours are static: the kernel's ARP table is one for all namespaces, capped at
/// `gc_thresh3` (1024) dynamic entries, and a busy machine (other labs) can fill it, after which
/// new dynamic entries fail and UDP sends vanish as `UdpSndbufErrors`. Permanent entries are
/// exempt from that cap (and keep ARP out of the captures).
pub struct VethPair {
    /// 10.0.0.3 on veth-a.
    pub a: NsThread,
    /// 10.0.0.2 on veth-b.
    pub b: NsThread,
}

#[allow(clippy::new_without_default)]
impl VethPair {
    /// Builds both namespaces and the link, IPv6 off so that only the test's traffic flows.
    pub fn new() -> Self {
        let a = NsThread::new();
        let b = NsThread::new();
        let peer = b.ns_path.clone();
        a.run(move || {
            sh("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
            sh(&format!("ip link add veth-a address {MAC_A} type veth peer name veth-b address {MAC_B} netns {peer}"));
            sh("ip addr add 10.0.0.3/24 dev veth-a");
            sh(&format!("ip neigh replace 10.0.0.2 lladdr {MAC_B} dev veth-a nud permanent"));
            sh("ip link set veth-a up");
        });
        b.run(|| {
            sh("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
            sh("sysctl -q -w net.ipv6.conf.veth-b.disable_ipv6=1");
            sh("ip addr add 10.0.0.2/24 dev veth-b");
            sh(&format!("ip neigh replace 10.0.0.3 lladdr {MAC_A} dev veth-b nud permanent"));
            sh("ip link set veth-b up");
        });
        // The kernel activates a link's queue only when linkwatch notices the carrier, up to a
        // second later (longer under load); frames sent before that are dropped. Wait for it.
        a.run(|| wait_link_up("veth-a"));
        b.run(|| wait_link_up("veth-b"));
        Self { a, b }
    }
}

/// Polls `ip link show` until `iface` is operationally up (5 s at most).
fn wait_link_up(iface: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-o", "link", "show", iface])
            .output()
            .expect("ip link show");
        if String::from_utf8_lossy(&out.stdout).contains("state UP") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{iface} did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
