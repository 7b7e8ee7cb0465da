//! What `e2e.rs` and `control/` share: the lab's privileged-test gate, a lab from a
//! topology, and `lb` started in a host and waited for until it prints `ready:`.

use lab::{Lab, LabOptions, Process, Topology, resolve};
use std::time::{Duration, Instant};

// The lab's own test helpers (the `LAB_REQUIRE_PRIVILEGED` gate), as nfqueue's tests use them.
pub use lab::testing::privileged;

/// The binary under test.
pub const LB: &str = env!("CARGO_BIN_EXE_lb");

/// A lab from a topology file or built-in, removed when dropped.
pub fn up(topology: &str) -> Lab {
    let t = Topology::load(topology).expect("topology");
    Lab::up(resolve(&t).expect("resolve"), &LabOptions::default()).expect("lab up")
}

/// Starts `lb ARGS` in `host` and waits (bounded: 10 s) for its `ready:` line; a process that
/// dies first fails the test with its log.
pub fn start_lb(lab: &mut Lab, host: &str, name: &str, args: &[&str]) -> Process {
    let mut argv = vec![LB];
    argv.extend_from_slice(args);
    let p = lab.spawn(host, name, &argv).expect("spawn lb");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        if log.lines().any(|l| l.starts_with("ready:")) {
            return p;
        }
        if !p.id.alive() || Instant::now() > deadline {
            panic!("lb {name} in {host} did not become ready:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
