//! The parser on small files: a full scenario, every kind of error, names, durations.

use super::*;
use crate::scenario::model::StepKind;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("scenarios/t.toml"))
}

const OK: &str = r#"
summary = "two datagrams"
topology = "single,3"
capture = ["h2", "h3:eth0"]

[trace]
ordering = "sort-arrivals"
settle = "100ms"

[[step]]
start = "udp-listener"
host = "h2"
listen = "10.0.0.2:9000"
name = "server"

[[step]]
udp-burst = "10.0.0.2:9000"
host = "h3"
count = 2

[[step]]
wait = "datagrams"
listener = "server"
count = 2
timeout = "1s"

[[step]]
conntrack = "after"
host = "h2"
filter = ["-p", "udp"]

[[expect]]
listener = "server"
datagrams = 2

[[expect]]
conntrack = "after"
entries = 0
kernel = ">=6.12"
elsewhere = "not measured"

[[expect]]
trace = "t"
"#;

#[test]
fn parses_a_full_scenario() {
    let s = parse(OK).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.captures.len(), 2);
    assert_eq!(s.captures[1].interface.as_deref(), Some("h3-eth0"));
    assert_eq!(s.trace.ordering, Ordering::SortArrivals);
    assert_eq!(s.trace.settle, Duration::from_millis(100));
    assert_eq!(s.steps.len(), 4);
    assert_eq!(s.steps[1].line, Some(16));
    assert!(matches!(
        &s.steps[1].kind,
        StepKind::UdpBurst { spec, .. } if spec.count == 2 && spec.payload == "datagram {n}\n"
    ));
    assert_eq!(s.expects.len(), 3);
    assert!(s.expects[1].kernel.is_some());
    assert_eq!(s.snapshot_path("t"), Path::new("scenarios/t.snap"));
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_step() {
    let e = err("[[step]]\nstart = \"udp-listener\"\nhost = \"h9\"\nlisten = \"10.0.0.2:1\"\n");
    assert_eq!(
        e,
        "scenarios/t.toml:1: step 1 (start): no host `h9` in the topology (hosts: h1, h2, h3)"
    );
    let e = err("\n[[step]]\ntelnet = \"10.0.0.50\"\nhost = \"h3\"\n");
    assert!(
        e.starts_with(
            "scenarios/t.toml:2: step 1 (telnet): `10.0.0.50` is not an IPv4 address and port"
        ),
        "{e}"
    );
    let e = err("[[step]]\ntelnet = \"10.0.0.50:1\"\nhost = \"h3\"\nsned = [\"x\"]\n");
    assert!(e.contains("step 1 (telnet): unknown field `sned`"), "{e}");
    let e = err("[[step]]\nhost = \"h3\"\n");
    assert!(e.contains("a step starts with one of: start, wait"), "{e}");
    let e = err("[[step]]\nsleep = \"1s\"\n");
    assert!(e.contains("a sleep needs `why"), "{e}");
    let e = err("bogus = 1\n");
    assert!(
        e.starts_with("scenarios/t.toml:1: unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn names_must_exist_be_unique_and_of_the_right_kind() {
    let e = err("[[step]]\nwait = \"log\"\nprocess = \"lb\"\nline = \"ready:\"\n");
    assert!(
        e.contains("no earlier step is named `lb` (known: none)"),
        "{e}"
    );
    let two = "[[step]]\nstart = \"lb\"\nhost = \"h1\"\nargs = [\"server\"]\n[[step]]\nstart = \"lb\"\nhost = \"h2\"\nargs = [\"agent\"]\n";
    let e = err(two);
    assert!(
        e.starts_with("scenarios/t.toml:5: step 2 (start): name `lb` is already used by step 1"),
        "{e}"
    );
    let e = err(
        "[[step]]\ntelnet = \"10.0.0.50:1\"\nhost = \"h3\"\n[[expect]]\nlistener = \"telnet\"\nbytes = 1\n",
    );
    assert!(
        e.contains("`telnet` (step 1) is a telnet step, not a tcp-listener or a udp-listener"),
        "{e}"
    );
}

#[test]
fn expectations_are_checked() {
    let base =
        "[[step]]\nconntrack = \"a\"\nhost = \"h1\"\n[[step]]\nconntrack = \"b\"\nhost = \"h1\"\n";
    let e = err(&format!(
        "{base}[[expect]]\nconntrack = \"b\"\nsince = \"a\"\ndelta = {{ clash = 1 }}\n"
    ));
    assert!(e.contains("unknown conntrack counter `clash`"), "{e}");
    let e = err(&format!(
        "{base}[[expect]]\nconntrack = \"a\"\nsince = \"b\"\ndelta = {{ drop = 0 }}\n"
    ));
    assert!(e.contains("must be a reading taken before"), "{e}");
    let e = err(&format!(
        "{base}[[expect]]\nconntrack = \"b\"\nentries = 1\nkernel = \">=6.12\"\n"
    ));
    assert!(e.contains("needs `elsewhere"), "{e}");
    let e = err(&format!(
        "{base}[[expect]]\nconntrack = \"b\"\noutcome = \"refused\"\n"
    ));
    assert!(
        e.contains("`outcome` does not apply to a conntrack expectation"),
        "{e}"
    );
    let e = err(&format!(
        "{base}[[expect]]\nconntrack = \"b\"\ntrace = \"x\"\n"
    ));
    assert!(e.contains("exactly one subject"), "{e}");
}

#[test]
fn inline_topology_keeps_file_lines() {
    let text = "name = \"x\"\n[topology]\nlinks = [[\"h1:eth0\", \"h9\"]]\n[topology.hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\n";
    let e = err(text);
    assert!(
        e.starts_with("scenarios/t.toml:3: links[0]: unknown node `h9`"),
        "{e}"
    );
    let ok = "[topology]\nlinks = [[\"a:eth0\", \"b:eth0\"]]\n[topology.hosts.a]\ninterfaces = { eth0 = \"10.9.0.1/24\" }\n[topology.hosts.b]\ninterfaces = { eth0 = \"10.9.0.2/24\" }\n";
    let s = parse(ok).unwrap();
    assert_eq!(s.plan.hosts.len(), 2);
    assert_eq!(s.plan.name, "t");
}

#[test]
fn durations_are_lbs_grammar() {
    let sleep = |d: &str| {
        parse(&format!("[[step]]\nsleep = {d}\nwhy = \"t\"\n")).map(|s| match &s.steps[0].kind {
            StepKind::Sleep { duration, .. } => *duration,
            k => panic!("{k:?}"),
        })
    };
    assert_eq!(sleep("\"2s\""), Ok(Duration::from_secs(2)));
    assert_eq!(sleep("\"250ms\""), Ok(Duration::from_millis(250)));
    assert_eq!(sleep("\"1.5s\""), Ok(Duration::from_millis(1500)));
    assert_eq!(sleep("\"1m\""), Ok(Duration::from_secs(60)));
    assert_eq!(sleep("\"2\""), Ok(Duration::from_secs(2)));
    assert_eq!(sleep("3"), Ok(Duration::from_secs(3)));
    let e = sleep("\"-1s\"").unwrap_err().to_string();
    assert!(e.contains("step 1 (sleep)") && e.contains("\"-1s\""), "{e}");
    let e = sleep("\"2 fortnights\"").unwrap_err().to_string();
    assert!(e.contains("unknown unit"), "{e}");
}

#[test]
fn impair_steps_name_a_link_end_and_the_ways_they_change() {
    let s =
        parse("[[step]]\nimpair = \"h3:eth0\"\negress = { loss = \"30%\", seed = 3 }\n").unwrap();
    let StepKind::Impair { link, ways, .. } = &s.steps[0].kind else {
        panic!("{:?}", s.steps[0].kind);
    };
    // single,3: h3's link is the third; s1 is its first end, so h3's egress is the reverse.
    assert_eq!(*link, 2);
    assert_eq!(ways.len(), 1);
    assert_eq!(ways[0].0, crate::impair::Way::Reverse);
    assert_eq!(ways[0].1.to_string(), "loss 30% seed 3");
    let e = err("[[step]]\nimpair = \"h3:eth7\"\nboth = {}\n");
    assert_eq!(
        e,
        "scenarios/t.toml:1: step 1 (impair): no link ends at h3:eth7 (h3's links: h3:eth0)"
    );
    let e = err("[[step]]\nimpair = \"h3:eth0\"\n");
    assert!(e.contains("say what changes: egress"), "{e}");
    let e = err("[[step]]\nimpair = \"h3:eth0\"\nboth = {}\negress = {}\n");
    assert!(e.contains("`both` stands alone"), "{e}");
    let e = err("[[step]]\nimpair = \"h3:eth0\"\ningress = { loss = \"x\" }\n");
    assert!(
        e.contains("step 1 (impair): loss = \"x\": expected a percentage"),
        "{e}"
    );
}
