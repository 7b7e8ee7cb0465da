//! Privileged tests of link impairments on the real kernel: the NFQUEUE engine gives every
//! packet the fate the seeded decider predicts (losses and copies, exactly), delays reorder,
//! and a running lab's impairment changes and clears without leaving a rule or an engine.

use lab::impair::rules::directions;
use lab::impair::{Decider, Fate, LinkImpairment, from_words, stream_seed};
use lab::testing::privileged;
use lab::topology::Origin;
use lab::{Lab, LabOptions, Topology, resolve};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

const TOPO: &str = r#"
links = [["h1:eth0", "s1", { forward = { loss = "20%", duplicate = "5%", seed = 7 } }],
         ["h2:eth0", "s1"]]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = "10.0.0.2/24" }
"#;

fn lab() -> Lab {
    let t = Topology::parse(
        TOPO,
        Origin::File {
            path: "impair.toml".into(),
            text: TOPO.into(),
        },
    )
    .unwrap();
    Lab::up(resolve(&t).unwrap(), &LabOptions::default()).unwrap()
}

/// Sends `n` numbered datagrams from h1 to h2, `gap` apart; returns how often each arrived,
/// in arrival order.
fn send(lab: &Lab, n: u32, gap: Duration) -> Vec<u32> {
    let rx = lab
        .run_in("h2", || UdpSocket::bind("10.0.0.2:7000"))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let tx = lab
        .run_in("h1", || UdpSocket::bind("10.0.0.1:0"))
        .unwrap()
        .unwrap();
    // Read while sending: a socket's default buffer holds a few hundred small datagrams.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(len) = rx.recv(&mut buf) {
            assert_eq!(len, 4);
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        got
    });
    // The first datagram resolves the neighbour (ARP is not impaired); it is not counted.
    tx.send_to(&u32::MAX.to_be_bytes(), "10.0.0.2:7000")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..n {
        tx.send_to(&i.to_be_bytes(), "10.0.0.2:7000").unwrap();
        std::thread::sleep(gap);
    }
    reader.join().unwrap()
}

fn predicted(lab: &Lab, link: usize, n: u32, skip: u32) -> (BTreeMap<u32, u32>, usize) {
    let plan = lab.plan();
    let d = directions(plan)
        .into_iter()
        .find(|d| d.link == link)
        .expect("an impaired direction");
    let mut decider = Decider::new(d.imp, stream_seed(d.imp.seed.unwrap_or(0), d.link, d.way));
    // The neighbour-resolving datagram went through the decider first.
    let mut copies = BTreeMap::new();
    let mut twice = 0;
    for i in 0..(n + skip) {
        let times = match decider.fate() {
            Fate::Drop => 0,
            Fate::Deliver { twice: t, .. } => 1 + u32::from(t),
        };
        if i >= skip {
            twice += usize::from(times == 2);
            copies.insert(i - skip, times);
        }
    }
    (copies, twice)
}

fn counted(got: &[u32]) -> BTreeMap<u32, u32> {
    let mut m = BTreeMap::new();
    for &i in got.iter().filter(|&&i| i != u32::MAX) {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_datagram_meets_the_fate_its_seed_predicts() {
    if !privileged("every_datagram_meets_the_fate_its_seed_predicts") {
        return;
    }
    let lab = lab();
    let n = 1000;
    let got = send(&lab, n, Duration::from_micros(200));
    let got_map = counted(&got);
    let (want, twice) = predicted(&lab, 0, n, 1);
    let mut want = want;
    want.retain(|_, v| *v > 0);
    assert_eq!(
        got_map, want,
        "the engine's losses and copies differ from the decider's"
    );
    let lost = n as usize - want.len();
    assert!(
        (150..250).contains(&lost) && twice > 20,
        "{lost} lost, {twice} doubled"
    );
    let engine_log = std::fs::read_to_string(lab.artifact_dir().join("s1-impair-s1-eth1.log"))
        .unwrap_or_default();
    assert!(
        engine_log.contains("loss 20% duplicate 5% seed 7"),
        "{engine_log}"
    );
}

#[test]
fn a_jittered_link_reorders_and_a_change_at_run_time_leaves_nothing_behind() {
    if !privileged("a_jittered_link_reorders_and_a_change_at_run_time_leaves_nothing_behind") {
        return;
    }
    let mut lab = lab();
    // Clear h1's link; impair s1 -> h2 (the reverse of ["h2:eth0", "s1"], queued in s1 on
    // the way out of its port) with a jitter wider than the gap between datagrams.
    lab::impair::apply::set(&mut lab, 0, LinkImpairment::default()).unwrap();
    let jitter = from_words(&["delay=10ms", "jitter=9ms", "duplicate=10%", "seed=1"]).unwrap();
    let to_h2 = LinkImpairment {
        a_to_b: jitter,
        b_to_a: Default::default(),
    };
    lab::impair::apply::set(&mut lab, 1, to_h2).unwrap();
    let procs: Vec<String> = lab.processes().iter().map(|p| p.name.clone()).collect();
    assert_eq!(procs, ["impair-h2-eth0"], "one engine, h1's stopped");
    let n = 300;
    let got = send(&lab, n, Duration::from_millis(1));
    let (want, twice) = predicted(&lab, 1, n, 1);
    assert_eq!(counted(&got), want, "copies differ from the decider's");
    assert!(twice > 10, "{twice}");
    let overtaken = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        overtaken > 30,
        "only {overtaken} datagrams came out of order"
    );

    lab::impair::apply::set(&mut lab, 1, LinkImpairment::default()).unwrap();
    assert!(lab.processes().is_empty(), "{:?}", lab.processes());
    for node in ["s1", "h1", "h2"] {
        for table in ["raw", "mangle"] {
            let out = lab
                .command(node, "iptables")
                .unwrap()
                .args(["-w", "-t", table, "-S"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.contains("lab-impair"), "{node} {table}: {text}");
        }
    }
    let got = send(&lab, 50, Duration::from_micros(100));
    assert_eq!(got.iter().filter(|&&i| i != u32::MAX).count(), 50);
    assert!(got.windows(2).all(|w| w[0] < w[1] || w[0] == u32::MAX));
}

fn lab_cli() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
}

/// `lab down NAME` when dropped, so a failing test leaves no lab behind.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = lab_cli().args(["down", &self.0]).output();
    }
}

#[test]
fn lab_impair_changes_a_running_lab_and_rejects_bad_input_in_one_line() {
    if !privileged("lab_impair_changes_a_running_lab_and_rejects_bad_input_in_one_line") {
        return;
    }
    let name = format!("imp{}", std::process::id() % 100_000);
    let up = lab_cli()
        .args(["up", "single,2", "--name", &name])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let _down = Down(name.clone());
    let run = |args: &[&str]| {
        let o = lab_cli()
            .args(["impair", "--lab", &name])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )
    };
    assert_eq!(
        run(&["h1:eth9", "delay=1ms"]),
        (
            Some(2),
            String::new(),
            format!("lab: lab {name}: no link ends at h1:eth9 (h1's links: h1:eth0)")
        )
    );
    let (code, _, err) = run(&["h1:eth0", "loss=lots"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("lab: loss = \"lots\": expected a percentage"),
        "{err}"
    );
    assert_eq!(
        run(&["h1:eth0", "--egress", "delay=40ms"]),
        (
            Some(0),
            "h1-eth0 -> s1-eth1: delay 40ms\n".to_string(),
            String::new()
        )
    );
    let ping = lab_cli()
        .args([
            "exec", "--lab", &name, "h1", "--", "ping", "-c", "3", "-i", "0.2", "-q",
        ])
        .arg("10.0.0.2")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    let avg: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
        .and_then(|v| v.split('/').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no RTT in {text}"));
    assert!(
        (40.0..48.0).contains(&avg),
        "RTT {avg} ms with 40 ms one way"
    );
    assert_eq!(
        run(&["h1:eth0"]).1,
        "h1-eth0 -> s1-eth1: delay 40ms\ns1-eth1 -> h1-eth0: none\n"
    );
    assert_eq!(run(&["h1:eth0", "none"]).0, Some(0));
}
