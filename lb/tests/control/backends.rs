//! `lb ctl add` and `lb ctl remove`: static backends taken in and let go at run time.

use crate::fixture::*;
use crate::harness::{LB, privileged};

/// `lb ctl ARGS` on the server's socket, as a person types it: (exit code, stdout, stderr).
fn ctl_text(server: &Lb, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(LB)
        .args(["ctl", "--socket", server.sock.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn backends_are_added_and_removed_at_run_time() {
    if !privileged("backends_are_added_and_removed_at_run_time") {
        return;
    }
    let mut s = setup(&[], &[], &["h2"]);
    // h5 is added as a static backend: its agent only takes the encapsulated packets in.
    start(
        &mut s.lab,
        "h5",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    let (code, out, err) = ctl_text(&s.server, &["add", "h5=10.0.0.5"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "h5 (10.0.0.5): added, takes new flows");
    let b = backends(&s.server);
    assert_eq!(b["h5"]["origin"], "static", "{b:#?}");
    assert!(all_active(&b, &["h2", "h5"]), "{b:#?}");
    let by = spread(&s.lab, 60);
    assert!(by.get("h5").copied().unwrap_or(0) > 10, "{by:?}");
    assert!(by.get("h2").copied().unwrap_or(0) > 10, "{by:?}");

    // Refusals name what is wrong, exit 2, and change nothing.
    for (args, why) in [
        (
            ["add", "h5=10.0.0.4"],
            "lb: ctl: add: h5: a backend of that name exists (10.0.0.5)",
        ),
        (
            ["add", "x=10.0.0.5"],
            "lb: ctl: add: x: 10.0.0.5 is backend h5's address",
        ),
        (
            ["add", "v=10.0.0.50"],
            "lb: ctl: add: v: 10.0.0.50 is the VIP",
        ),
        (
            ["add", "me=10.0.0.1"],
            "lb: ctl: add: backend me (10.0.0.1) is an address of this host (h1-eth0): its packets would come back to the balancer",
        ),
        (
            ["remove", "h2"],
            "lb: ctl: remove: h2: registered by an agent: it leaves when its agent deregisters (lb ctl deregister on the backend)",
        ),
        (
            ["remove", "nope"],
            "lb: ctl: remove: no backend named \"nope\"",
        ),
    ] {
        let (code, _, err) = ctl_text(&s.server, &args);
        assert_eq!((code, err.as_str()), (Some(2), why), "{args:?}");
    }
    assert_eq!(backends(&s.server).len(), 2);

    let (code, out, err) = ctl_text(&s.server, &["remove", "h5"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "h5: removed; its tracked flows go to the other backends"
    );
    assert!(!backends(&s.server).contains_key("h5"));
    let by = spread(&s.lab, 20);
    assert_eq!(by.get("h2").copied(), Some(20), "{by:?}");
}
