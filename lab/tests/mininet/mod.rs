//! Privileged tests of the Mininet backend on the real kernel: labs built by Mininet come and
//! go (also after SIGKILL) leaving the root namespace as it was, and nothing of Mininet
//! running. They need Mininet (ci/setup.sh installs it): without it they skip with the reason,
//! or fail under LAB_REQUIRE_PRIVILEGED=1.
//!
//! Mininet's switches live in the root namespace, so these tests compare it before and after;
//! they run one at a time (`root_namespace_lock`, with the other tests that compare it) so one
//! test's switch ports are not in another's picture.

use lab::state::SwitchKind;
use lab::testing::{namespaces_of, privileged, root_namespace_lock, root_namespace_state};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Root, and Mininet installed (required where privileged tests are).
fn ready(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    match lab::mininet::installed(SwitchKind::Lxbr) {
        Ok(()) => true,
        Err(e) => {
            assert_ne!(
                std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref(),
                Ok("1"),
                "{test}: {e}"
            );
            eprintln!("SKIP {test}: {e}");
            false
        }
    }
}

/// [`ready`], then the root namespace to this test alone (its switch ports must not be in
/// another test's before/after picture); `None` when the test skips.
fn ready_alone(test: &str) -> Option<MutexGuard<'static, ()>> {
    ready(test).then(root_namespace_lock)
}

fn lab_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lab"))
}

/// Pids of Mininet's shells (`bash … mininet:h1`) and of lab's Mininet helper.
fn mininet_processes() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("mininet:") || c.contains("lab's Mininet helper")
            })
        })
        .collect()
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run lab");
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn twenty_cycles_and_five_sigkills_leave_the_root_namespace_as_it_was() {
    let Some(_alone) =
        ready_alone("twenty_cycles_and_five_sigkills_leave_the_root_namespace_as_it_was")
    else {
        return;
    };
    let before = root_namespace_state();
    let shells_before = mininet_processes();
    let id = std::process::id() % 100_000;
    for i in 0..20 {
        let name = format!("mc{id}-{i}");
        let out = run_ok(lab_bin().args(["up", "--backend", "mininet", "--name", &name]));
        assert!(out.contains("is up"), "{out}");
        let list = run_ok(lab_bin().args(["list"]));
        assert!(
            list.contains(&format!("{name}  single,3  Up  backend mininet (lxbr)")),
            "{list}"
        );
        assert_eq!(namespaces_of(&name).len(), 3);
        assert_ne!(
            root_namespace_state(),
            before,
            "cycle {i}: the switch is in the root namespace"
        );
        run_ok(lab_bin().args(["down", &name]));
        assert_eq!(
            root_namespace_state(),
            before,
            "cycle {i}: root namespace changed"
        );
        assert_eq!(namespaces_of(&name), Vec::<String>::new());
        assert_eq!(
            mininet_processes(),
            shells_before,
            "cycle {i}: Mininet left processes"
        );
    }
    // SIGKILL of `lab up --hold`: once the lab is up, and at points during Mininet's build.
    for (i, kill_after) in [None, Some(60), Some(150), Some(250), None]
        .into_iter()
        .enumerate()
    {
        let name = format!("mk{id}-{i}");
        let mut child = lab_bin()
            .args(["up", "--backend", "mininet", "--hold", "--name", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn lab up --hold");
        match kill_after {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => {
                let mut line = String::new();
                let mut r = BufReader::new(child.stdout.take().expect("stdout"));
                r.read_line(&mut line).expect("read");
                assert!(line.contains("is up"), "{line}");
            }
        }
        child.kill().expect("SIGKILL lab");
        child.wait().expect("reap lab");
        // What the killed build's helper was doing ends with it (its stdin closes).
        let deadline = Instant::now() + Duration::from_secs(10);
        while mininet_processes().len() > shells_before.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        run_ok(lab_bin().args(["clean"]));
        assert_eq!(
            root_namespace_state(),
            before,
            "kill {i}: root namespace changed"
        );
        assert_eq!(namespaces_of(&name), Vec::<String>::new(), "kill {i}");
        assert_eq!(
            mininet_processes(),
            shells_before,
            "kill {i}: Mininet left processes"
        );
        let list = run_ok(lab_bin().args(["list", "--json"]));
        assert!(!list.contains(&format!("\"{name}\"")), "kill {i}: {list}");
    }
}

/// A Mininet custom topology (a `Topo` subclass with `addHost(…, ip=…, defaultRoute=…)`,
/// `addSwitch`, `addLink`, a `LinuxRouter`, `--topo routed,2`) runs with `lab up --custom` on
/// both backends, and `lab exec` carries a TCP line from a client to the server across the
/// router.
#[test]
fn a_mininet_custom_topology_runs_on_both_backends() {
    let Some(_alone) = ready_alone("a_mininet_custom_topology_runs_on_both_backends") else {
        return;
    };
    let before = root_namespace_state();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mininet/routed.py");
    let id = std::process::id() % 100_000;
    for backend in ["native", "mininet"] {
        let name = format!("cu{id}-{backend}");
        let out = run_ok(lab_bin().args([
            "up",
            "--custom",
            file,
            "--topo",
            "routed,2",
            "--backend",
            backend,
            "--name",
            &name,
        ]));
        assert!(out.contains("(4 hosts, 2 switch(es), 5 links)"), "{out}");
        // The server's switch port, captured as on a native switch (in the root namespace
        // for Mininet's): the first TCP packet is h2's SYN.
        let capture = lab_bin()
            .args([
                "capture",
                "--lab",
                &name,
                "s2:eth2",
                "--count",
                "1",
                "--duration",
                "5",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lab capture");
        std::thread::sleep(Duration::from_millis(300));
        let listener = lab_bin()
            .args([
                "exec", "--lab", &name, "srv", "--", "timeout", "5", "nc", "-l", "8080",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("nc -l in srv");
        // The client retries until the listener is bound (at most 3 s).
        let sent = run_ok(lab_bin().args([
            "exec", "--lab", &name, "h2", "--", "bash", "-c",
            "for i in $(seq 30); do echo hello-from-h2 | nc -N 10.2.0.10 8080 && exit 0; sleep 0.1; done; exit 1",
        ]));
        let got = listener.wait_with_output().expect("listener");
        assert_eq!(
            String::from_utf8_lossy(&got.stdout).trim(),
            "hello-from-h2",
            "{backend}: {sent}"
        );
        let captured = capture.wait_with_output().expect("lab capture");
        let shown = String::from_utf8_lossy(&captured.stdout);
        assert!(
            shown.contains("h2.") && shown.contains("> srv.8080: Flags [S]"),
            "{backend}: {shown}{}",
            String::from_utf8_lossy(&captured.stderr)
        );
        let link = run_ok(lab_bin().args(["exec", "--lab", &name, "srv", "--", "ip", "link"]));
        assert!(
            link.contains("link/ether 00:00:00:02:00:0a"),
            "{backend}: {link}"
        );
        let route = run_ok(lab_bin().args(["exec", "--lab", &name, "h1", "--", "ip", "route"]));
        assert!(route.contains("default via 10.1.0.1"), "{backend}: {route}");
        run_ok(lab_bin().args(["down", &name]));
    }
    assert_eq!(root_namespace_state(), before);
}

/// `lab convert` prints what `lab up --custom` runs: Mininet's ports, the routes, the router.
#[test]
fn convert_prints_the_custom_topology_as_a_topology_file() {
    let test = "convert_prints_the_custom_topology_as_a_topology_file";
    if !ready(test) {
        return;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mininet/routed.py");
    let out = run_ok(lab_bin().args(["convert", "--custom", file, "--topo", "routed,1"]));
    for want in [
        r#"["h1:eth0", "s1:eth2"],"#,
        r#"["s2:eth1", "r1:eth1"],"#,
        r#"interfaces = { eth0 = "10.1.0.1/24", eth1 = "10.2.0.1/24" }"#,
        r#"sysctl = { "net.ipv4.ip_forward" = 1 }"#,
        r#"default_route = "10.2.0.1""#,
    ] {
        assert!(out.contains(want), "missing {want} in:\n{out}");
    }
    let o = lab_bin()
        .args(["convert", "--custom", file, "--topo", "ring"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        format!("lab: {file} --topo ring: no topology named `ring` in topos (it has: routed)")
    );
}

/// `tc = { bw = 10 }` is Mininet's TCLink: htb at 10 Mbit/s on the host's end with the Mininet
/// backend; the native backend takes it as `rate = "10mbit"` both ways (tbf on both ends).
#[test]
fn tclink_bandwidth_through_both_backends() {
    let Some(_alone) = ready_alone("tclink_bandwidth_through_both_backends") else {
        return;
    };
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/topologies/tclink.toml"
    );
    let name = format!("tc{}", std::process::id() % 100_000);
    run_ok(lab_bin().args(["up", file, "--name", &name]));
    let shown = run_ok(lab_bin().args(["impair", "--lab", &name, "h1:eth0"]));
    let qdisc = run_ok(lab_bin().args([
        "exec", "--lab", &name, "h1", "--", "tc", "qdisc", "show", "dev", "h1-eth0",
    ]));
    run_ok(lab_bin().args(["down", &name]));
    assert_eq!(
        shown,
        "h1-eth0 -> s1-eth1: rate 10mbit\ns1-eth1 -> h1-eth0: rate 10mbit\n"
    );
    assert!(
        qdisc.contains("tbf") && qdisc.contains("rate 10Mbit"),
        "{qdisc}"
    );
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    run_ok(lab_bin().args(["up", file, "--backend", "mininet", "--name", &name]));
    let qdisc = run_ok(lab_bin().args([
        "exec", "--lab", &name, "h1", "--", "tc", "class", "show", "dev", "h1-eth0",
    ]));
    run_ok(lab_bin().args(["down", &name]));
    assert!(
        qdisc.contains("htb") && qdisc.contains("rate 10Mbit"),
        "{qdisc}"
    );
}
