//! Rootless labs as an ordinary user sees them (issue 15): the machine's root starts `lab` as
//! nobody, whose labs live in user namespaces of its own. `lab up`, `exec`, `check`, `down`;
//! `clean` after the holder was SIGKILLed; and `clean` after `lab up` was SIGKILLed while it
//! built, leave nothing: no process, no record, no state directory, and the root namespace
//! exactly as it was.
//!
//! Starting a process as another user needs the machine's root, so a rootless run of this
//! binary (already inside a user namespace of one uid) skips it; `.ci/run`'s rootless pass runs
//! the same steps as its own user (`ci/rootless-smoke.sh`).

use lab::state::ProcessId;
use lab::testing::{privileged, root_namespace_lock, root_namespace_state};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

/// The `lab` binary copied where nobody may run it (the checkout may be in root's home).
fn lab_for_nobody() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lab-rootless-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("lab");
    std::fs::copy(env!("CARGO_BIN_EXE_lab"), &bin).unwrap();
    (dir, bin)
}

/// `lab ARGS` as nobody, with none of this process's lab variables.
fn nobody_command(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("LAB_STATE_DIR")
        .env_remove("LAB_ARTIFACTS")
        .env_remove("LAB_USERNS_HOLDER");
    cmd
}

fn as_nobody(bin: &Path, args: &[&str]) -> Output {
    nobody_command(bin, args).output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Processes of nobody's, by pid and command name.
fn nobodys_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}"))
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == NOBODY)
        })
        // Zombies wait for their parent (init) and hold nothing: not alive.
        .filter(|&pid| ProcessId::of(pid).is_some_and(|p| p.alive()))
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some(format!("{pid} {}", comm.trim()))
        })
        .collect()
}

fn holder_of(state: &Path, name: &str) -> i32 {
    let text = std::fs::read_to_string(state.join(format!("{name}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["userns"]["dedicated"], true, "{text}");
    v["userns"]["holder"]["pid"].as_i64().unwrap() as i32
}

#[test]
fn an_ordinary_users_lab_lives_in_user_namespaces_and_leaves_nothing() {
    let test = "an_ordinary_users_lab_lives_in_user_namespaces_and_leaves_nothing";
    if !privileged(test) {
        return;
    }
    if !lab::rootless::in_initial_user_namespace() {
        eprintln!(
            "SKIP {test}: starting `lab` as another user needs the machine's root; the rootless pass of .ci/run runs these steps as its user (ci/rootless-smoke.sh)"
        );
        return;
    }
    let _lock = root_namespace_lock();
    assert_eq!(
        nobodys_processes(),
        Vec::<String>::new(),
        "nobody runs something already"
    );
    let before = root_namespace_state();
    let (dir, bin) = lab_for_nobody();
    let state = PathBuf::from(format!("/tmp/lab-{NOBODY}"));
    let name = format!("rl{}", std::process::id() % 100_000);

    // up, list, exec (host name, address), check, a process left running, down.
    let up = ok(&as_nobody(
        &bin,
        &["up", "--topo", "single,3", "--name", &name],
    ));
    assert!(up.contains(&format!("lab {name} is up")), "{up}");
    let holder = holder_of(&state, &name);
    let list = ok(&as_nobody(&bin, &["list"]));
    assert!(list.contains(&name), "{list}");
    let host = ok(&as_nobody(
        &bin,
        &["exec", "--lab", &name, "h2", "--", "hostname"],
    ));
    assert_eq!(host.trim(), "h2");
    let addr = ok(&as_nobody(&bin, &["exec", "h3", "--", "ip", "-o", "addr"]));
    assert!(addr.contains("inet 10.0.0.3/8"), "{addr}");
    let check = ok(&as_nobody(&bin, &["check"]));
    assert!(check.contains("reach each other"), "{check}");
    let sleeper = ok(&as_nobody(
        &bin,
        &[
            "exec",
            "h2",
            "--",
            "sh",
            "-c",
            "sleep 300 >/dev/null 2>&1 & echo $!",
        ],
    ));
    assert!(!sleeper.trim().is_empty());
    // Nothing of the lab is in the root namespace, and its names are only inside.
    assert_eq!(root_namespace_state(), before);
    assert!(!Path::new(&format!("/run/netns/lab-{name}-h1")).exists());
    let down = ok(&as_nobody(&bin, &["down", &name]));
    assert!(
        !nobodys_processes()
            .iter()
            .any(|p| p.starts_with(&format!("{holder} ")))
    );
    assert!(down.contains(&format!("lab {name} removed")), "{down}");
    assert_eq!(nobodys_processes(), Vec::<String>::new());
    assert!(!state.exists(), "{} is left", state.display());

    // The holder SIGKILLed: the lab is gone with it, but for what still runs in its hosts,
    // which `lab clean` stops before it deletes the record.
    ok(&as_nobody(
        &bin,
        &["up", "--topo", "single,2", "--name", &name],
    ));
    let holder = holder_of(&state, &name);
    let holder_id = ProcessId::of(holder).expect("the holder runs");
    ok(&as_nobody(
        &bin,
        &[
            "exec",
            "h1",
            "--",
            "sh",
            "-c",
            "sleep 300 >/dev/null 2>&1 &",
        ],
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // kill() returns before the holder has died: until it gives up its namespaces, the lab
    // is still there and `lab exec` rightly enters it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while holder_id.holds_namespaces() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!holder_id.holds_namespaces(), "the holder outlived SIGKILL");
    let exec = as_nobody(&bin, &["exec", "h1", "--", "true"]);
    assert_eq!(exec.status.code(), Some(1));
    let err = String::from_utf8_lossy(&exec.stderr);
    assert!(
        err.contains("is gone: `lab clean` removes what is left"),
        "{err}"
    );
    let clean = ok(&as_nobody(&bin, &["clean"]));
    assert!(
        clean.contains(&format!("lab {name} removed (its holder is gone)")),
        "{clean}"
    );
    assert_eq!(nobodys_processes(), Vec::<String>::new());
    assert!(!state.exists(), "{} is left", state.display());
    assert_eq!(root_namespace_state(), before);

    // `lab up` SIGKILLed while it builds: before its record exists (the holder, never told
    // that a record names it, ends by itself) and after (`lab clean` removes the half-built
    // lab and stops the holder).
    for wait_for_record in [false, true] {
        let mut up = nobody_command(&bin, &["up", "--topo", "single,150", "--name", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let record = state.join(format!("{name}.json"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wait_for_record && !record.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        up.kill().unwrap();
        up.wait().unwrap();
        ok(&as_nobody(&bin, &["clean"]));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !nobodys_processes().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            nobodys_processes(),
            Vec::<String>::new(),
            "after a SIGKILLed lab up (record written: {})",
            record.exists()
        );
        assert!(!record.exists(), "{} is left", record.display());
        ok(&as_nobody(&bin, &["clean"]));
        assert!(!state.exists(), "{} is left", state.display());
    }
    assert_eq!(root_namespace_state(), before);

    let _ = std::fs::remove_dir_all(format!("/var/tmp/lab-{NOBODY}/{name}"));
    let _ = std::fs::remove_dir(format!("/var/tmp/lab-{NOBODY}"));
    std::fs::remove_dir_all(dir).unwrap();
}
