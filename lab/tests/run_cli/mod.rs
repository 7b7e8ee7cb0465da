//! Privileged tests of `lab run` on the fixtures in fixtures/scenarios/: exit codes, the report
//! (pass/fail per expectation, the snapshot diff, artifacts), a missing `lb`, Ctrl-C, and that
//! no namespace is left behind.

use lab::testing::{namespaces_of, privileged};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/scenarios")
        .join(name)
}

fn lab_run() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lab"));
    // Never write .snap.new files into the source tree from a test.
    c.arg("run").env("INSTA_UPDATE", "no");
    c
}

/// Lab names a report mentions (`lab NAME (removed)`).
fn labs_in(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("lab     "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn run_invalid_file_is_one_line_exit_2() {
    // No privileges needed: the file is rejected before anything is created.
    let out = lab_run()
        .arg(fixture("invalid/unknown-field.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown-field.toml:4: step 1 (telnet): unknown field `sned`"),
        "{err}"
    );
    let out = lab_run().arg(fixture("nope.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or directory"));
}

#[test]
fn run_reports_pass_fail_diff_and_artifacts() {
    if !privileged("run_reports_pass_fail_diff_and_artifacts") {
        return;
    }
    let results = std::env::temp_dir().join(format!("lab-run-results-{}.json", std::process::id()));
    let out = lab_run()
        .arg(fixture("passing.toml"))
        .arg(fixture("failing.toml"))
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Progress lines, then one report per scenario in file order.
    assert!(
        text.contains("[passing] 2/3 udp-burst from h2 to 10.0.0.1:9000"),
        "{text}"
    );
    assert!(text.contains("PASS passing (1 of 1 expectations"), "{text}");
    assert!(text.contains("FAIL failing (0 of 2 expectations"), "{text}");
    assert!(
        text.contains("  FAIL   1  listener `sink`: 4 datagram(s)\n            3 datagram(s)"),
        "{text}"
    );
    // The snapshot diff: the stored lengths (7) against this run's ("ping N" is 6 bytes).
    assert!(text.contains("differs from"), "{text}");
    assert!(
        text.contains("nothing written (CI or INSTA_UPDATE=no)"),
        "{text}"
    );
    assert!(text.contains("-h2.p1 > h1.9000: UDP, length 7"), "{text}");
    assert!(text.contains("+h2.p1 > h1.9000: UDP, length 6"), "{text}");
    assert!(text.contains("pcap h1 (h1-eth0)"), "{text}");
    assert!(text.contains("kernel  "), "{text}");
    assert!(text.contains("2 scenario(s): 1 passed, 1 failed"), "{text}");
    assert!(
        !fixture("failing.snap.new").exists(),
        "INSTA_UPDATE=no must write nothing"
    );
    // Every lab is gone, and the comparable results name the kernel.
    let labs = labs_in(&text);
    assert_eq!(labs.len(), 2, "{text}");
    for l in &labs {
        assert_eq!(
            namespaces_of(l),
            Vec::<String>::new(),
            "lab {l} left namespaces"
        );
    }
    let json = std::fs::read_to_string(&results).unwrap();
    std::fs::remove_file(&results).unwrap();
    assert!(json.contains("\"kernel\""), "{json}");
    assert!(
        !json.contains(&labs[0]),
        "results must not depend on the lab name"
    );
}

#[test]
fn run_without_lb_binary_says_how_to_build_it() {
    if !privileged("run_without_lb_binary_says_how_to_build_it") {
        return;
    }
    let out = lab_run()
        .arg(fixture("missing-lb.toml"))
        .arg("--lb")
        .arg("/nonexistent/lb")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED: the `lb` binary /nonexistent/lb does not exist"),
        "{text}"
    );
    assert!(
        text.contains("   2  wait for `ready:` in lb's log\n      skipped: an earlier step failed"),
        "{text}"
    );
    let out = lab_run()
        .arg(fixture("missing-lb.toml"))
        .env("LB_BIN", "/nonexistent/lb")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LB_BIN=/nonexistent/lb does not exist"),
        "{text}"
    );
    for l in labs_in(&text) {
        assert_eq!(namespaces_of(&l), Vec::<String>::new());
    }
    // Found by default next to the running `lab`: a `lab` without an `lb` beside it says how
    // to build one. (A hard link, so the executable's own path is in that directory.)
    // A rootless run of binaries root built may neither write target/tmp nor hard-link a file
    // of root's (fs.protected_hardlinks): then a copy in the temporary directory.
    let lonely = lonely_lab();
    let out = Command::new(&lonely)
        .arg("run")
        .arg(fixture("missing-lb.toml"))
        .env_remove("LB_BIN")
        .output()
        .unwrap();
    std::fs::remove_dir_all(lonely.parent().unwrap()).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the `lb` binary was not found"), "{text}");
    assert!(text.contains("build it with `cargo build -p lb`"), "{text}");
}

#[test]
fn run_interrupted_removes_its_lab() {
    if !privileged("run_interrupted_removes_its_lab") {
        return;
    }
    let mut child = lab_run()
        .arg(fixture("interruptible.toml"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The lab is up once its first progress line is printed.
    let lab = loop {
        let l = lines.next().expect("lab run ended early").unwrap();
        if let Some(rest) = l.strip_prefix("[interruptible] lab ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert_eq!(namespaces_of(&lab).len(), 3, "lab {lab} should be up");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    // 130, not 0: the 30 s sleep was cut short.
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("INTERRUPTED interruptible")),
        "{rest:?}"
    );
    assert_eq!(
        namespaces_of(&lab),
        Vec::<String>::new(),
        "lab {lab} left namespaces"
    );
}

/// A `lab` executable alone in a directory of its own.
fn lonely_lab() -> std::path::PathBuf {
    let name = format!("lonely-lab-{}", std::process::id());
    let linked = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
    if std::fs::create_dir_all(&linked).is_ok()
        && std::fs::hard_link(env!("CARGO_BIN_EXE_lab"), linked.join("lab")).is_ok()
    {
        return linked.join("lab");
    }
    let copied = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&copied).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_lab"), copied.join("lab")).unwrap();
    copied.join("lab")
}

#[test]
fn connections_break_on_resets_and_stall_on_drops() {
    // The simulator refuses the steps by name (no root needed for that part).
    let out = lab_run()
        .args(["--sim"])
        .arg(fixture("connections.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("h2: a tcp-echo server on 10.0.0.2:8080 cannot be simulated yet"),
        "{text}"
    );
    if !privileged("connections_break_on_resets_and_stall_on_drops") {
        return;
    }
    let out = lab_run().arg(fixture("connections.toml")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("20 connected from h1 to 10.0.0.2:8080"),
        "{text}"
    );
    assert!(
        text.contains("tally `reset-before`: open 20, failed 0, broken 0, stalled 0, backends 1"),
        "{text}"
    );
    assert!(
        text.contains("tally `dropped-before` → `dropped-after`: open +0, broken +0, stalled +10"),
        "{text}"
    );
    assert!(
        text.contains("PASS connections (4 of 4 expectations"),
        "{text}"
    );
    for lab in labs_in(&text) {
        assert!(namespaces_of(&lab).is_empty(), "{lab} left namespaces");
    }
}
