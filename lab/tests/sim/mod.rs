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
