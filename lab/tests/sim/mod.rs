//! `lab run --sim`: scenarios in the simulator, without root, deterministic by seed. These
//! tests never skip: they need no privilege.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/scenarios")
        .join(name)
}

/// A fresh artifact directory for one test.
fn artifacts(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lab-sim-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lab_run_sim(artifacts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["run", "--sim"])
        .args(args)
        .env("LAB_ARTIFACTS", artifacts)
        .env("INSTA_UPDATE", "no")
        .output()
        .unwrap()
}

/// The single artifact directory a run left in `root`.
fn only_run(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[test]
fn a_udp_scenario_passes_in_the_simulator() {
    let root = artifacts("pass");
    let out = lab_run_sim(&root, &[fixture("passing.toml").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("PASS passing (1 of 1 expectations"), "{text}");
    assert!(text.contains("(simulated), seed 1"), "{text}");
    let run = only_run(&root);
    let trace = std::fs::read_to_string(run.join("trace.txt")).unwrap();
    assert_eq!(
        trace.matches("h2.p1 > h1.9000: UDP, length 11").count(),
        3,
        "{trace}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The same seed gives byte-identical traces, pcaps and results.
#[test]
fn the_same_seed_gives_identical_artifacts() {
    let files = ["trace.txt", "h1-h1-eth0.pcap", "result.json", "h1-sink.log"];
    let mut seen: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..3 {
        let root = artifacts(&format!("seed{i}"));
        let out = lab_run_sim(
            &root,
            &["--seed", "7", fixture("passing.toml").to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0));
        let run = only_run(&root);
        seen.push(
            files
                .iter()
                .map(|f| std::fs::read(run.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
                .collect(),
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn bad_simulator_options_are_one_line_and_exit_2() {
    let root = artifacts("bad");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "banana",
            fixture("passing.toml").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "lab: --kernel \"banana\": a kernel version is written like 3.6 or 6.12"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["run", "--kernel", "3.6"])
        .arg(fixture("passing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sim"));
    std::fs::remove_dir_all(&root).unwrap();
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

/// Seed post 2's scenarios pass in the simulator against the snapshots the real kernel made.
#[test]
fn seed_2_scenarios_pass_in_the_simulator_with_the_real_kernel_s_snapshots() {
    let root = artifacts("seed2");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "6.18",
            scenario("udp-conntrack-race.toml").to_str().unwrap(),
            scenario("udp-conntrack-race-dnat.toml").to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("scenarios/udp-conntrack-race.snap")
            && text.contains("scenarios/udp-conntrack-race-dnat.snap")
            && text.contains("PASS   3  trace matches snapshot `udp-conntrack-race`")
            && text.contains("PASS   4  trace matches snapshot `udp-conntrack-race-dnat`"),
        "{text}"
    );
    assert!(text.contains("2 scenario(s): 2 passed, 0 failed"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Under the post's kernel the second datagram is lost at the conntrack confirm, with the
/// post's counters; the 6.12+ expectations do not apply there.
#[test]
fn seed_2_under_kernel_3_6_loses_the_second_datagram() {
    let root = artifacts("seed2-36");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "3.6",
            scenario("udp-conntrack-race.toml").to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("PASS   4  listener `server`: 1 datagram(s)"),
        "{text}"
    );
    assert!(
        text.contains("PASS   5  conntrack `before` → `after`: insert_failed +1, drop +1"),
        "{text}"
    );
    assert!(text.contains("3 not applicable to this kernel"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// 100 runs of one seed: byte-identical traces, pcaps, results, conntrack readings and
/// program logs, for seed 2's scenario and for a balancer scenario (lb server, lb agent).
#[test]
fn one_seed_gives_identical_artifacts_in_100_runs() {
    let cases: [(&str, &[&str]); 2] = [
        (
            "udp-conntrack-race.toml",
            &[
                "trace.txt",
                "result.json",
                "router-any.pcap",
                "server-server-eth0.pcap",
                "router-conntrack-after.txt",
                "router-nfq-holder.log",
            ],
        ),
        (
            "nfqueue-fixes-reset.toml",
            &[
                "trace.txt",
                "ladder.txt",
                "result.json",
                "h2-any.pcap",
                "h1-h1-eth0.pcap",
                "h1-balancer.log",
                "h2-agent.log",
                "h2-nc.log",
            ],
        ),
    ];
    for (file, files) in cases {
        let mut first: Option<Vec<Vec<u8>>> = None;
        for i in 0..100 {
            let root = artifacts(&format!("det{i}"));
            let out = lab_run_sim(&root, &["--seed", "42", scenario(file).to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(0), "{file} run {i}");
            let run = only_run(&root);
            let got: Vec<Vec<u8>> = files
                .iter()
                .map(|f| std::fs::read(run.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
                .collect();
            std::fs::remove_dir_all(&root).unwrap();
            match &first {
                None => first = Some(got),
                Some(f) => {
                    for (k, name) in files.iter().enumerate() {
                        assert!(f[k] == got[k], "{file} run {i}: {name} differs from run 0");
                    }
                }
            }
        }
    }
}

/// A `--results` file (one scenario) without the kernel's name, the one field that differs
/// by design.
fn comparable(path: &Path) -> String {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for r in v.as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("kernel");
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// Fidelity: each scenario in scenarios/ on the real kernel and in the simulator gives the
/// same result (steps, expectations, trace, ladder); the diff is shown when they disagree.
/// Privileged: the real run needs root.
#[test]
fn the_real_kernel_and_the_simulator_agree_on_every_scenario() {
    if !lab::testing::privileged("the_real_kernel_and_the_simulator_agree_on_every_scenario") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    for f in &files {
        let path = dir.join(f);
        if let Some(why) = lab::scenario::Scenario::load(&path).unwrap().not_simulated {
            // `scenarios.rs` checks that the simulator still refuses it.
            eprintln!("{f}: not simulated: {why}");
            continue;
        }
        let sim_root = artifacts(&format!("fid-sim-{f}"));
        let sim_results = sim_root.join("results.json");
        let out = lab_run_sim(
            &sim_root,
            &[
                "--results",
                sim_results.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{f} in the simulator:\n{text}");
        let real_root = artifacts(&format!("fid-real-{f}"));
        let out = Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["run", "--results"])
            .arg(real_root.join("results.json"))
            .arg(&path)
            .env("LAB_ARTIFACTS", &real_root)
            .env("INSTA_UPDATE", "no")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f} on the real kernel:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let (sim, real) = (
            comparable(&sim_results),
            comparable(&real_root.join("results.json")),
        );
        if sim != real {
            let diff = similar::TextDiff::from_lines(&real, &sim)
                .unified_diff()
                .header("real kernel", "simulator")
                .to_string();
            panic!("{f}: the simulator disagrees with the real kernel:\n{diff}");
        }
        std::fs::remove_dir_all(&sim_root).unwrap();
        std::fs::remove_dir_all(&real_root).unwrap();
    }
}

/// `--explore N` runs every ordering of the two simultaneous datagrams, finds both outcomes,
/// counts the orderings of each, says it saw them all, and names an ordering that replays
/// each; a bound smaller than the search says so.
#[test]
fn explore_runs_every_ordering_and_each_replays() {
    let root = artifacts("explore");
    let file = fixture("simultaneous.toml");
    let out = lab_run_sim(&root, &["--explore", "100", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("every ordering the model allows"), "{text}");
    assert!(text.contains("2 distinct outcome(s)"), "{text}");
    let runs: u64 = text
        .split(", seed 1: ")
        .nth(1)
        .and_then(|t| t.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let replays: Vec<String> = text
        .lines()
        .filter_map(|l| l.split("replay with --seed 1 --ordering ").nth(1))
        .map(|rest| rest.split(':').next().unwrap().to_string())
        .collect();
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.split("--ordering ").nth(1))
        .map(|rest| rest.rsplit_once(": ").unwrap().0.to_string())
        .collect();
    let counts: u64 = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("outcome "))
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!((replays.len(), counts), (2, runs), "{text}");
    assert_eq!(ids[0], "0", "the seed's own order comes first: {text}");
    // Each replayed ordering gives its outcome: the two traces list the senders in both orders.
    let mut firsts = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let r = artifacts(&format!("replay{k}"));
        let out = lab_run_sim(&r, &["--ordering", id, file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        let trace = std::fs::read_to_string(only_run(&r).join("trace.txt")).unwrap();
        firsts.push(
            trace
                .lines()
                .nth(1)
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_string(),
        );
        std::fs::remove_dir_all(&r).unwrap();
    }
    firsts.sort();
    assert_eq!(firsts, ["h1", "h2"]);
    std::fs::remove_dir_all(&root).unwrap();
    // A bound below the search's size stops it and says so.
    let root = artifacts("explore-bound");
    let out = lab_run_sim(&root, &["--explore", "1", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("1 ordering(s), the bound (--explore 1); more orderings exist"),
        "{text}"
    );
    let out = lab_run_sim(&root, &["--ordering", "x:1", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ordering \"x:1\""));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Seed post 2 without NFQUEUE: the explorer finds the orderings in which the router works on
/// both datagrams at once (two CPUs); under 3.6 they lose the second with `drop` +1, on
/// today's kernel none does. The ordering it names replays the loss.
#[test]
fn explore_finds_the_two_cpu_race_under_3_6_only() {
    let root = artifacts("two-cpus");
    let file = fixture("two-cpus.toml");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "3.6",
            "--explore",
            "300",
            file.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("2 distinct outcome(s)"), "{text}");
    assert!(text.contains("+      \"detail\": \"drop +1\""), "{text}");
    let racy = text
        .lines()
        .find(|l| l.contains("FAIL"))
        .and_then(|l| l.split("--ordering ").nth(1))
        .map(|rest| rest.rsplit_once(": FAIL").unwrap().0.to_string())
        .unwrap_or_else(|| panic!("{text}"));
    std::fs::remove_dir_all(&root).unwrap();
    let root = artifacts("two-cpus-replay");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "3.6",
            "--ordering",
            &racy,
            file.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL   1  listener `server`: 2 datagram(s)"),
        "{text}"
    );
    let counters =
        std::fs::read_to_string(only_run(&root).join("router-conntrack-after.txt")).unwrap();
    assert!(
        counters.contains("insert_failed = 1") && counters.contains("drop = 1"),
        "{counters}"
    );
    std::fs::remove_dir_all(&root).unwrap();
    let root = artifacts("two-cpus-today");
    let out = lab_run_sim(
        &root,
        &[
            "--kernel",
            "6.18",
            "--explore",
            "300",
            file.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 distinct outcome(s)"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The explorer's first ordering (`0`, no alternative taken) is the plain run: the same
/// comparable result for every scenario, though exploring parks packets between hooks.
#[test]
fn ordering_0_is_the_plain_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let root = artifacts("ordering0");
    let (plain, zero) = (root.join("plain.json"), root.join("zero.json"));
    let out = lab_run_sim(
        &root,
        &["--results", plain.to_str().unwrap(), dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = lab_run_sim(
        &root,
        &[
            "--ordering",
            "0",
            "--results",
            zero.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(comparable(&plain), comparable(&zero));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A scenario written to a temporary file (its topology a built-in).
fn scenario_file(root: &Path, name: &str, body: &str) -> PathBuf {
    let path = root.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("name = \"{name}\"\nsummary = \"test\"\ntopology = \"single,3\"\n{body}"),
    )
    .unwrap();
    path
}

/// The simulated `lb server` installs what the real one installs, undoes it on SIGTERM and
/// leaves its rules behind on SIGKILL; `iptables -S` in an exec step shows the rules as they
/// are.
#[test]
fn the_simulated_balancer_cleans_up_on_sigterm_and_not_on_sigkill() {
    let root = artifacts("lb-stop");
    let start = |name: &str| {
        format!(
            "[[step]]\nstart = \"lb\"\nhost = \"h1\"\nname = \"{name}\"\nargs = [\"server\", \"--vip\", \"10.0.0.50\", \"--backend\", \"h2=10.0.0.2\"]\n\
             [[step]]\nwait = \"log\"\nprocess = \"{name}\"\nline = \"ready:\"\n\
             [[step]]\nexec = [\"iptables\", \"-S\", \"INPUT\"]\nhost = \"h1\"\nname = \"{name}-up\"\n"
        )
    };
    let body = format!(
        "{}[[step]]\nstop = \"b1\"\nsignal = \"TERM\"\n\
         [[step]]\nexec = [\"iptables\", \"-S\", \"INPUT\"]\nhost = \"h1\"\nname = \"after-term\"\n\
         {}[[step]]\nstop = \"b2\"\nsignal = \"KILL\"\n\
         [[step]]\nexec = [\"iptables\", \"-S\", \"INPUT\"]\nhost = \"h1\"\nname = \"after-kill\"\n",
        start("b1"),
        start("b2")
    );
    let file = scenario_file(&root, "lb-stop", &body);
    let out = lab_run_sim(&root, &[file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("b1 ended (exit status: 0)"), "{text}");
    assert!(text.contains("b2 ended (signal: 9 (SIGKILL))"), "{text}");
    let run = only_run(&root);
    let read = |f: &str| std::fs::read_to_string(run.join(f)).unwrap();
    let rule = "-A INPUT -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0";
    assert!(
        read("h1-b1-up.log").contains(rule),
        "{}",
        read("h1-b1-up.log")
    );
    assert_eq!(read("h1-after-term.log"), "-P INPUT ACCEPT\n");
    assert!(read("h1-after-kill.log").contains(rule));
    assert_eq!(read("h1-after-kill.log").lines().count(), 3);
    assert!(read("h1-b1.log").starts_with(
        "ready: vip 10.0.0.50 on h1-eth0, intake nfqueue 0 (batch verdicts), forward encap, backends [h2 10.0.0.2]\n"
    ));
    assert!(read("h1-b1.log").contains("removed the NFQUEUE rules rules=2"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// `lb`'s own refusals end the simulated process as they end the real one (exit status 2,
/// the line it prints); what the simulator cannot run fails the step, naming it.
#[test]
fn lb_refusals_and_unsimulated_features_are_reported_by_name() {
    let root = artifacts("lb-refusals");
    let wait = "[[step]]\nwait = \"log\"\nprocess = \"b\"\nline = \"ready:\"\n";
    let cases = [
        (
            "bad-backend",
            r#"["server", "--vip", "10.0.0.50", "--backend", "h1=10.0.0.1"]"#,
            "b exited (exit status: 2) before printing `ready:`; its log: lb: lb server: backend h1 (10.0.0.1) is an address of this host (h1-eth0)",
        ),
        (
            "bad-flag",
            r#"["server", "--vip", "10.0.0.50", "--frobnicate"]"#,
            "lb: unexpected argument '--frobnicate' found",
        ),
        (
            "registration",
            r#"["server", "--vip", "10.0.0.50", "--control", "10.0.0.1:7000"]"#,
            "h1: `lb server --vip 10.0.0.50 --control 10.0.0.1:7000`: registration (`--control`) cannot be simulated yet (see docs/sim.md)",
        ),
        (
            "ctl",
            r#"["ctl", "state"]"#,
            "`lb ctl` (the simulator has no unix sockets) cannot be simulated yet",
        ),
    ];
    for (name, args, expected) in cases {
        let body =
            format!("[[step]]\nstart = \"lb\"\nhost = \"h1\"\nname = \"b\"\nargs = {args}\n{wait}");
        let file = scenario_file(&root, name, &body);
        let out = lab_run_sim(&root, &[file.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in:\n{text}"
        );
    }
    let body = "[[step]]\nexec = [\"ip\", \"route\"]\nhost = \"h1\"\n";
    let file = scenario_file(&root, "exec", body);
    let out = lab_run_sim(&root, &[file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("h1: `ip route` is an arbitrary command: the simulator runs no processes"),
        "{text}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
