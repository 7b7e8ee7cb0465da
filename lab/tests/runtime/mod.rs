//! Privileged tests of the lab runtime on the real kernel: deploy, reachability, teardown,
//! parallel labs, SIGKILLed owners, half-way failures and the CLI.

use lab::check::check_connectivity;
use lab::state::StateRecord;
use lab::testing::{
    namespaces_of, privileged, privileged_with, root_namespace_lock, root_namespace_state,
};
use lab::topology::{Origin, builtin};
use lab::{Lab, LabError, LabOptions, Plan, Topology, resolve};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn plan(spec: &str) -> Plan {
    resolve(&builtin(spec).unwrap()).unwrap()
}

fn up(spec: &str) -> Lab {
    Lab::up(plan(spec), &LabOptions::default()).unwrap()
}

fn lab_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lab"))
}

/// Runs `lab down NAME` when dropped, so a failing test leaves no lab behind.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = lab_bin().args(["down", &self.0]).output();
    }
}

/// `lab up --topo TOPO --name NAME`, which must succeed.
fn lab_up(topo: &str, name: &str) {
    let out = lab_bin()
        .args(["up", "--topo", topo, "--name", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn default_lab_every_host_reaches_every_other() {
    if !privileged("default_lab_every_host_reaches_every_other") {
        return;
    }
    let lab = up("single,3");
    let r = check_connectivity(&lab, Duration::from_secs(3)).unwrap();
    assert!(r.all_pairs);
    assert_eq!(r.pairs, 6);
    assert_eq!(r.missing, [], "UDP pairs that failed");

    // And TCP, from Rust: h3 connects to a listener in h2, sends, h2 reads it.
    let listener = lab
        .run_in("h2", || TcpListener::bind("10.0.0.2:8080"))
        .unwrap()
        .unwrap();
    let mut client = lab
        .run_in("h3", || {
            TcpStream::connect_timeout(&"10.0.0.2:8080".parse().unwrap(), Duration::from_secs(2))
        })
        .unwrap()
        .unwrap();
    client.write_all(b"Is this working?\n").unwrap();
    drop(client);
    let (mut conn, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip().to_string(), "10.0.0.3");
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "Is this working?\n");
}

#[test]
fn teardown_leaves_no_namespace_link_or_record() {
    if !privileged("teardown_leaves_no_namespace_link_or_record") {
        return;
    }
    let _root = lab::testing::root_namespace_lock();
    let before = root_namespace_state();
    let lab = up("linear,3");
    let name = lab.name().to_string();
    assert_eq!(namespaces_of(&name).len(), 6);
    assert!(StateRecord::path_of(&name).exists());
    lab.down().unwrap();
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!StateRecord::path_of(&name).exists());
    assert_eq!(root_namespace_state(), before, "the root namespace changed");
}

#[test]
fn dropping_the_lab_removes_it() {
    if !privileged("dropping_the_lab_removes_it") {
        return;
    }
    let name = {
        let lab = up("single,2");
        lab.name().to_string()
    };
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
}

#[test]
fn eight_labs_in_parallel() {
    if !privileged("eight_labs_in_parallel") {
        return;
    }
    let _root = lab::testing::root_namespace_lock();
    let before = root_namespace_state();
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let lab = up("single,3");
                    let r = check_connectivity(&lab, Duration::from_secs(3)).unwrap();
                    assert_eq!(r.missing, [], "lab {}", lab.name());
                    let name = lab.name().to_string();
                    lab.down().unwrap();
                    name
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "lab names collided: {names:?}");
    for n in &names {
        assert_eq!(namespaces_of(n), Vec::<String>::new());
    }
    assert_eq!(root_namespace_state(), before, "the root namespace changed");
}

#[test]
fn lab_of_a_sigkilled_owner_is_removed_by_clean() {
    if !privileged("lab_of_a_sigkilled_owner_is_removed_by_clean") {
        return;
    }
    // `lab clean` removes every orphaned lab of the machine's, this test's included.
    let _clean = root_namespace_lock();
    let name = format!("kill{}", std::process::id());
    let mut child = lab_bin()
        .args(["up", "--name", &name, "--hold"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready when it says it is holding the lab (printed after the record says `up`).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().starts_with("holding the lab")),
        "lab up --hold ended early"
    );
    assert_eq!(namespaces_of(&name).len(), 4);
    child.kill().unwrap(); // SIGKILL: no cleanup runs in the owner
    child.wait().unwrap();
    assert_eq!(
        namespaces_of(&name).len(),
        4,
        "the lab must outlive its SIGKILLed owner"
    );
    assert!(StateRecord::load(&name).unwrap().orphaned());

    let out = lab_bin().arg("clean").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("lab {name} removed (owner is gone)")),
        "{stdout}"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!StateRecord::path_of(&name).exists());
}

#[test]
fn clean_artifacts_deletes_only_those_of_labs_that_are_gone() {
    if !privileged("clean_artifacts_deletes_only_those_of_labs_that_are_gone") {
        return;
    }
    // `lab clean` removes every orphaned lab of the machine's, this test's included.
    let _clean = root_namespace_lock();
    // A private state directory and artifact root, so that other tests' artifacts are safe:
    // one live lab (a copy of a real record, owner alive) and one directory nobody owns.
    let lab = up("single,2");
    let tmp = std::env::temp_dir().join(format!("lab-clean-artifacts-{}", std::process::id()));
    let (state, root) = (tmp.join("state"), tmp.join("artifacts"));
    std::fs::create_dir_all(&state).unwrap();
    let live = root.join("live");
    let stale = root.join("gone");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("sub/h1.pcap"), [0u8; 4096]).unwrap();
    let mut record = lab.record().clone();
    record.artifact_dir = live.clone();
    std::fs::write(
        state.join(format!("{}.json", record.name)),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let out = lab_bin()
        .args(["clean", "--artifacts"])
        .env("LAB_STATE_DIR", &state)
        .env("LAB_ARTIFACTS", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 artifact directory of removed labs deleted"),
        "{stdout}"
    );
    assert!(!stale.exists(), "the stale directory is still there");
    assert!(live.exists(), "a live lab's artifacts were deleted");
    assert_eq!(namespaces_of(lab.name()).len(), 3);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn clean_keeps_labs_whose_owner_lives() {
    if !privileged("clean_keeps_labs_whose_owner_lives") {
        return;
    }
    // `lab clean` removes every orphaned lab of the machine's, this test's included.
    let _clean = root_namespace_lock();
    let lab = up("single,2");
    let out = lab_bin().arg("clean").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        namespaces_of(lab.name()).len(),
        3,
        "clean removed a lab whose owner is alive"
    );
}

#[test]
fn failure_half_way_leaves_nothing_and_names_host_and_rule() {
    if !privileged_with(
        "failure_half_way_leaves_nothing_and_names_host_and_rule",
        "iptables-restore",
    ) {
        return;
    }
    let text = r#"
links = [["h1:eth0", "s1"], ["h2:eth0", "s1"]]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = "10.0.0.2/24" }
iptables = ["-A INPUT -p tcp --dport 22 -j ACCEPT", "-A INPUT -p tcp -j NOSUCHCHAIN"]
"#;
    let t = Topology::parse(
        text,
        Origin::File {
            path: "half.toml".into(),
            text: text.into(),
        },
    )
    .unwrap();
    let _root = lab::testing::root_namespace_lock();
    let before = root_namespace_state();
    let name = format!("half{}", std::process::id());
    let err = Lab::up(
        resolve(&t).unwrap(),
        &LabOptions {
            name: Some(name.clone()),
            ..Default::default()
        },
    )
    .err()
    .expect("must fail");
    match &err {
        LabError::Firewall { node, rule, .. } => {
            assert_eq!(node, "h2");
            assert_eq!(rule, "-A INPUT -p tcp -j NOSUCHCHAIN");
        }
        other => panic!("expected a firewall error, got {other}"),
    }
    assert!(
        err.to_string()
            .starts_with("h2: firewall rule rejected: `-A INPUT -p tcp -j NOSUCHCHAIN`"),
        "{err}"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!StateRecord::path_of(&name).exists());
    assert_eq!(root_namespace_state(), before);
}

#[test]
fn firewall_sysctls_routes_and_loopback_are_applied() {
    if !privileged_with(
        "firewall_sysctls_routes_and_loopback_are_applied",
        "iptables-save",
    ) {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/topologies/router.toml");
    let lab = Lab::up(
        resolve(&Topology::from_file(&path).unwrap()).unwrap(),
        &LabOptions::default(),
    )
    .unwrap();
    let run = |host: &str, cmd: &[&str]| {
        let o = lab
            .command(host, cmd[0])
            .unwrap()
            .args(&cmd[1..])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        run("router", &["iptables-save", "-t", "nat"])
            .contains("-A POSTROUTING -o router-eth1 -j MASQUERADE")
    );
    assert_eq!(
        run("router", &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    assert!(run("client", &["ip", "route"]).contains("default via 10.1.0.1"));
    assert!(run("server", &["ip", "-o", "addr", "show", "dev", "lo"]).contains("10.2.0.50/32"));
    // The client reaches the server's loopback VIP through the masquerading router.
    let listener = lab
        .run_in("server", || TcpListener::bind("10.2.0.50:9000"))
        .unwrap()
        .unwrap();
    let c = lab.run_in("client", || {
        TcpStream::connect_timeout(
            &SocketAddrV4::new([10, 2, 0, 50].into(), 9000).into(),
            Duration::from_secs(2),
        )
    });
    c.unwrap().unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "10.2.0.1",
        "source must be masqueraded to the router"
    );
}

#[test]
fn background_processes_log_and_stop_at_teardown() {
    if !privileged("background_processes_log_and_stop_at_teardown") {
        return;
    }
    let mut lab = up("single,2");
    let p = lab
        .spawn(
            "h1",
            "sleeper",
            &[
                "sh",
                "-c",
                "echo started in $(cat /proc/sys/net/ipv4/ip_forward); exec sleep 60",
            ],
        )
        .unwrap();
    assert!(p.id.alive());
    let rec = StateRecord::load(lab.name()).unwrap();
    assert_eq!(rec.processes.len(), 1, "the pid must be recorded");
    // The log is written by the child; wait for its line (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&p.log)
        .unwrap_or_default()
        .contains("started")
    {
        assert!(std::time::Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.down().unwrap();
    assert!(!p.id.alive(), "process survived teardown");
}

/// Each process started in a lab host sees the host's name as its host name, as on a machine of
/// its own; the machine's own host name is untouched (issue 13, case 12).
#[test]
fn lab_hosts_have_their_own_host_name() {
    if !privileged("lab_hosts_have_their_own_host_name") {
        return;
    }
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lab = up("single,3");
    for host in ["h1", "h3", "s1"] {
        let out = lab_bin()
            .args(["exec", "--lab", lab.name(), host, "--", "hostname"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{host}\n"));
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        machine
    );
}

#[test]
fn cli_exec_passes_stdio_and_exit_code() {
    if !privileged("cli_exec_passes_stdio_and_exit_code") {
        return;
    }
    let lab = up("single,2");
    let mut child = lab_bin()
        .args([
            "exec",
            "--lab",
            lab.name(),
            "h2",
            "--",
            "sh",
            "-c",
            "cat; ip -o -4 addr show h2-eth0 | wc -l; exit 7",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n1\n");
}

#[test]
fn cli_bad_input_is_one_line_and_exit_2() {
    // Bad input is rejected before any privilege is needed, so this runs unprivileged too.
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", "/nonexistent/t.toml"],
            "lab: /nonexistent/t.toml: cannot read the file",
        ),
        (
            &["up", "--topo", "single,0"],
            "lab: builtin single,0: k must be 1 to 1000",
        ),
        (
            &["up", "--topo", "star,3"],
            "lab: builtin star,3: unknown topology",
        ),
        (
            &["exec", "--lab", "no-such-lab", "h1", "--", "true"],
            "lab: no lab named `no-such-lab`",
        ),
        (
            &["down", "no-such-lab"],
            "lab: cannot remove lab `no-such-lab`: no lab named `no-such-lab`",
        ),
        (&["up", "--name", "Bad_Name"], "lab: "),
        // Unbounded reads grew `lab up /dev/zero` to gigabytes (issue 13, case 7).
        (
            &["up", "/dev/zero"],
            "lab: /dev/zero: cannot read the file: not a regular file",
        ),
        (&["run", "/dev/null"], "lab: /dev/null: not a regular file"),
        (&["frobnicate"], "error: unrecognized subcommand"),
    ];
    for (args, start) in cases {
        let out = lab_bin().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "lab {args:?}: {err}");
        assert!(err.starts_with(start), "lab {args:?}: {err}");
        if !args[0].starts_with("frob") {
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "lab {args:?} printed more than one line: {err}"
            );
        }
    }
}

#[test]
fn cli_rejects_a_bad_topology_with_file_line_and_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/topologies/invalid/unknown-host.toml");
    let out = lab_bin()
        .args(["up", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.ends_with("unknown-host.toml:3: links[1]: unknown node `h9` (nodes: h1, s1)\n"),
        "{err}"
    );
}

#[test]
fn unknown_sysctl_names_host_and_key_and_leaves_nothing() {
    if !privileged("unknown_sysctl_names_host_and_key_and_leaves_nothing") {
        return;
    }
    let text = r#"
links = [["h1:eth0", "s1"]]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
sysctl = { "net.ipv4.ip_forward" = 1, "net.ipv4.no_such_knob" = 1 }
"#;
    let t = Topology::parse(
        text,
        Origin::File {
            path: "sysctl.toml".into(),
            text: text.into(),
        },
    )
    .unwrap();
    let name = format!("sys{}", std::process::id());
    let err = Lab::up(
        resolve(&t).unwrap(),
        &LabOptions {
            name: Some(name.clone()),
            ..Default::default()
        },
    )
    .err()
    .expect("must fail");
    assert_eq!(
        err.to_string(),
        "h1: sysctl net.ipv4.no_such_knob=1: no such sysctl in this kernel"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!StateRecord::path_of(&name).exists());
}

/// `lab up --check` whose check fails leaves the lab up for inspection, says so with the command
/// that removes it, and exits 1; `lab down` then removes it.
#[test]
fn cli_up_with_a_failing_check_says_the_lab_is_left_up() {
    if !privileged("cli_up_with_a_failing_check_says_the_lab_is_left_up") {
        return;
    }
    // Two hosts on one switch in different subnets, no routes: they cannot reach each other.
    let dir = std::env::temp_dir().join(format!("lab-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("apart.toml");
    std::fs::write(
        &file,
        "links = [[\"h1:eth0\", \"s1\"], [\"h2:eth0\", \"s1\"]]\n[switches.s1]\n\
         [hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\n\
         [hosts.h2]\ninterfaces = { eth0 = \"10.9.0.2/24\" }\n",
    )
    .unwrap();
    let name = format!("chk{}", std::process::id() % 100_000);
    let out = lab_bin()
        .args(["up", file.to_str().unwrap(), "--name", &name, "--check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let left_up = namespaces_of(&name);
    let down = lab_bin().args(["down", &name]).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "check failed: lab {name} is left up for inspection; remove it: lab down {name}"
        )),
        "{stdout}"
    );
    assert!(!left_up.is_empty(), "the lab was left up");
    assert!(down.status.success());
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
}

/// `lab doctor` says whether the kernel has nft's `queue` statement (this machine's does not:
/// CONFIG_NFT_QUEUE is unset), agreeing with the same rule tried in a fresh namespace, and
/// names the iptables alternative when it is absent (issue 13, case 13).
#[test]
fn doctor_reports_the_nft_queue_statement_as_the_kernel_has_it() {
    if !privileged_with(
        "doctor_reports_the_nft_queue_statement_as_the_kernel_has_it",
        "nft",
    ) {
        return;
    }
    let out = lab_bin().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("nft `queue` statement"))
        .unwrap_or_else(|| panic!("no nft queue line in:\n{text}"));
    let probe = Command::new("unshare")
        .args([
            "-n",
            "nft",
            "add table ip t; add chain ip t c { type filter hook input priority 0; }; \
             add rule ip t c queue num 0 bypass",
        ])
        .output()
        .unwrap();
    if probe.status.success() {
        assert!(line.trim_start().starts_with("ok"), "{text}");
    } else {
        assert!(line.trim_start().starts_with("absent"), "{text}");
        assert!(text.contains("-j NFQUEUE --queue-num N"), "{text}");
    }
}

/// `lab doctor` says which mode it runs labs in, and reports what rootless labs need as the
/// machine has it: the user-namespace limit and, as root, whether nobody can unshare a user
/// and a network namespace.
#[test]
fn doctor_reports_user_namespaces_as_the_machine_has_them() {
    if !privileged("doctor_reports_user_namespaces_as_the_machine_has_them") {
        return;
    }
    let out = lab_bin().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    assert!(
        text.contains(&format!("user.max_user_namespaces = {}", max.trim())),
        "{text}"
    );
    if !lab::rootless::in_initial_user_namespace() {
        // A rootless run: this test's `lab` is root of the test binary's user namespace.
        assert!(
            text.contains("ok     mode: root inside a user namespace: labs live in it"),
            "{text}"
        );
        return;
    }
    assert!(
        text.contains("ok     mode: root: labs in the machine's namespaces"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("an ordinary user (nobody) can"))
        .unwrap_or_else(|| panic!("no unprivileged unshare line in:\n{text}"));
    let probe = {
        use std::os::unix::process::CommandExt;
        Command::new("unshare")
            .args(["-Urn", "true"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let verdict = if probe.status.success() {
        "ok"
    } else {
        "absent"
    };
    assert!(line.trim_start().starts_with(verdict), "{text}");
}

/// `lab down` ends what `lab exec` started and left running in the lab's hosts: found by the
/// network namespace it runs in, never by name (issue 13, case 10).
#[test]
fn down_ends_processes_left_inside_the_labs_namespaces() {
    if !privileged("down_ends_processes_left_inside_the_labs_namespaces") {
        return;
    }
    let name = format!("exe{}", std::process::id() % 100_000);
    lab_up("single,2", &name);
    // A background process in h2, detached from this test: `lab exec` itself returns at once.
    let out = lab_bin()
        .args(["exec", "--lab", &name, "h2", "--", "sh", "-c"])
        .arg("sleep 300 >/dev/null 2>&1 & echo $!")
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a pid");
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
    };
    assert!(alive(pid), "the sleep runs in h2");
    let down = lab_bin().args(["down", &name]).output().unwrap();
    let still = alive(pid);
    if still {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        !still,
        "lab down left pid {pid} running in the deleted namespace"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
}

/// A `lab up` killed while it creates the lab leaves a half-built persistent lab: `lab list`
/// says so and `lab clean` removes it (issue 13, case 4: it said "nothing to clean").
#[test]
fn clean_removes_a_lab_whose_creator_died_while_creating() {
    if !privileged("clean_removes_a_lab_whose_creator_died_while_creating") {
        return;
    }
    // `lab clean` removes every orphaned lab of the machine's, this test's included.
    let _clean = root_namespace_lock();
    let name = format!("half{}", std::process::id() % 100_000);
    let mut child = lab_bin()
        .args(["up", "--topo", "single,150", "--name", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let record = StateRecord::path_of(&name);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Killed once some of its 151 namespaces exist: a half-built lab.
    while namespaces_of(&name).len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&record).expect("the record was written");
    assert!(
        text.contains("\"creating\""),
        "killed too late to test: {text}"
    );
    let list = lab_bin().arg("list").output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let clean = lab_bin().arg("clean").output().unwrap();
    let clean = String::from_utf8_lossy(&clean.stdout).into_owned()
        + &String::from_utf8_lossy(&clean.stderr);
    assert!(
        list.contains("(its Creating process died: `lab clean` removes it)"),
        "{list}"
    );
    assert!(
        clean.contains(&format!(
            "lab {name} removed (its creator died before it was up)"
        )),
        "{clean}"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!record.exists());
}

/// What runs in a host resolves the lab's host names from the lab's own /etc/hosts (bound in a
/// mount namespace of the command's), the machine's /etc/hosts is untouched, and telnet no
/// longer waits for a resolver no lab host can reach before it sends.
#[test]
fn exec_resolves_the_labs_host_names_and_leaves_etc_hosts_alone() {
    if !privileged("exec_resolves_the_labs_host_names_and_leaves_etc_hosts_alone") {
        return;
    }
    let machine = std::fs::read_to_string("/etc/hosts").unwrap();
    let name = format!("hosts{}", std::process::id() % 100_000);
    lab_up("single,3", &name);
    let _down = DownOnDrop(name.clone());
    let exec = |host: &str, argv: &[&str]| {
        let out = lab_bin()
            .args(["exec", "--lab", &name, host, "--"])
            .args(argv)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let h2 = exec("h3", &["getent", "hosts", "h2"]);
    assert_eq!(
        h2.split_whitespace().collect::<Vec<_>>(),
        ["10.0.0.2", "h2"]
    );
    let own = exec("h1", &["sh", "-c", "getent hosts $(hostname)"]);
    assert_eq!(
        own.split_whitespace().collect::<Vec<_>>(),
        ["10.0.0.1", "h1"]
    );
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), machine);
    let out = lab_bin().args(["down", &name]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), machine);
}
