//! Privileged tests of `lab capture`: the CLI attached to a lab by name, its live lines, pcap,
//! ladder, Ctrl-C and bad input.

use std::io::{BufRead, BufReader, Lines, Read};
use std::net::UdpSocket;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use lab::topology::builtin;
use lab::{Lab, LabOptions, resolve};

use lab::testing::{privileged, tool};

/// Removes the lab on drop, pass or fail.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if let Err(e) = lab::lab::down(&self.0) {
            eprintln!("removing lab {}: {e}", self.0);
        }
    }
}

/// Kills the child (by its pid) if it is still running when the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A persistent `single,3` lab named `name` (so the CLI can attach to it), and its remover.
fn lab_up(name: &str) -> (Lab, DownOnDrop) {
    let plan = resolve(&builtin("single,3").unwrap()).unwrap();
    let opts = LabOptions {
        name: Some(name.into()),
        persistent: true,
        ..Default::default()
    };
    let name = Lab::up(plan, &opts).unwrap().detach();
    let guard = DownOnDrop(name.clone());
    (Lab::attach(&name).unwrap(), guard)
}

/// Starts `lab capture ARGS` and returns once it says it is armed (its readiness line).
fn start_capture(args: &[&str]) -> (ChildGuard, Lines<BufReader<ChildStdout>>) {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_lab"))
            .arg("capture")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("capturing on h2 ("),
        "no readiness line: {line:?}"
    );
    // The rest (the summary) goes to the test's stderr, shown when it fails.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        eprint!("{rest}");
    });
    let stdout = BufReader::new(child.0.stdout.take().unwrap()).lines();
    (child, stdout)
}

/// A server in h2 (so no ICMP unreachable) and a client in h3.
fn udp_pair(lab: &Lab) -> (UdpSocket, UdpSocket) {
    let server = lab
        .run_in("h2", || UdpSocket::bind("10.0.0.2:9000"))
        .unwrap()
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client = lab
        .run_in("h3", || UdpSocket::bind("10.0.0.3:0"))
        .unwrap()
        .unwrap();
    (server, client)
}

const UDP_LINE: &str = "h3.p1 > h2.9000: UDP, length 5";

/// Sends one datagram h3 → h2 and reads printed lines until its line appears; `false` when the
/// capture ended first. Lines before it, if any, are kept too.
fn send_and_see(
    client: &UdpSocket,
    server: &UdpSocket,
    lines: &mut Lines<BufReader<ChildStdout>>,
    seen: &mut Vec<String>,
) -> bool {
    client.send_to(b"hello", "10.0.0.2:9000").unwrap();
    let mut buf = [0u8; 16];
    server.recv_from(&mut buf).expect("datagram did not arrive");
    for line in lines.by_ref() {
        let line = line.unwrap();
        let udp = line.contains("UDP");
        seen.push(line);
        if udp {
            return true;
        }
    }
    false
}

#[test]
fn capture_cli_prints_live_lines_writes_pcap_and_stops() {
    if !privileged("capture_cli_prints_live_lines_writes_pcap_and_stops") {
        return;
    }
    let name = format!("cap{}", std::process::id());
    let (lab, _down) = lab_up(&name);
    let (server, client) = udp_pair(&lab);
    let pcap = std::env::temp_dir().join(format!("lab-capture-{name}.pcap"));
    let pcap_s = pcap.to_str().unwrap();

    // --count 3: three shown lines, then the pcap, exit 0.
    let (mut child, mut lines) =
        start_capture(&["--lab", &name, "h2", "--count", "3", "-w", pcap_s]);
    let mut seen = Vec::new();
    while send_and_see(&client, &server, &mut lines, &mut seen) {}
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "lab capture failed; printed {seen:?}"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    let udp: Vec<&String> = seen.iter().filter(|l| l.contains("UDP")).collect();
    assert!(!udp.is_empty(), "{seen:?}");
    assert!(udp.iter().all(|l| *l == UDP_LINE), "{seen:?}");

    let meta = std::fs::metadata(&pcap).expect("no pcap written");
    assert!(meta.len() > 24, "pcap holds no packets");
    if let Some(tcpdump) = tool(
        "capture_cli_prints_live_lines_writes_pcap_and_stops",
        "tcpdump",
    ) {
        let out = lab::testing::tcpdump_reader(&tcpdump)
            .args(["-n", "-r", pcap_s])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("10.0.0.3.") && l.contains("> 10.0.0.2.9000: UDP, length 5"))
                .count(),
            udp.len(),
            "{text}"
        );
    }
    let _ = std::fs::remove_file(&pcap);

    // No limit: Ctrl-C (SIGINT) stops it, then the ladder; exit 0.
    let (mut child, mut lines) = start_capture(&["--lab", &name, "h2:eth0", "--ladder"]);
    let mut seen = Vec::new();
    assert!(
        send_and_see(&client, &server, &mut lines, &mut seen),
        "capture ended early: {seen:?}"
    );
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "printed {seen:?}");
    assert!(seen.iter().any(|l| l == UDP_LINE), "{seen:?}");
    let ladder = seen.join("\n");
    assert!(
        ladder.contains("UDP len 5") && ladder.contains("h3") && ladder.contains("h2"),
        "{ladder}"
    );
}

#[test]
fn capture_cli_all_shows_what_the_default_hides() {
    if !privileged("capture_cli_all_shows_what_the_default_hides") {
        return;
    }
    let name = format!("capall{}", std::process::id());
    let (lab, _down) = lab_up(&name);
    let (server, client) = udp_pair(&lab);
    // h3 has never talked to h2: its first frame is the ARP request, hidden by default.
    let (mut child, mut lines) = start_capture(&["--lab", &name, "h2", "--all", "--count", "1"]);
    let mut seen = Vec::new();
    send_and_see(&client, &server, &mut lines, &mut seen);
    assert_eq!(child.0.wait().unwrap().code(), Some(0), "printed {seen:?}");
    assert_eq!(seen, ["ARP, Request who-has h2 tell h3"]);
}

#[test]
fn capture_cli_unknown_host_or_interface_is_one_line_and_exit_2() {
    if !privileged("capture_cli_unknown_host_or_interface_is_one_line_and_exit_2") {
        return;
    }
    let name = format!("capbad{}", std::process::id());
    let (_lab, _down) = lab_up(&name);
    let cases = [
        (
            "h9",
            format!("lab: lab `{name}` has no host `h9` (hosts: h1, h2, h3; switches: s1)\n"),
        ),
        (
            "h2:eth7",
            "lab: h2 has no interface `eth7` (interfaces: h2-eth0, lo)\n".to_string(),
        ),
    ];
    for (target, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["capture", "--lab", &name, target])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "lab capture {target}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want);
        assert!(out.stdout.is_empty());
    }
}
