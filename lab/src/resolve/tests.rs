use super::*;
use crate::topology::{Topology, builtin};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/topologies")
}

#[test]
fn single3_builtin_equals_fixture_file() {
    let from_file =
        resolve(&Topology::from_file(&fixtures().join("single3.toml")).unwrap()).unwrap();
    let built = resolve(&builtin("single,3").unwrap()).unwrap();
    assert_eq!(from_file, built);
}

#[test]
fn single3_names_and_indexes() {
    let p = resolve(&builtin("single,3").unwrap()).unwrap();
    let h1 = p.host("h1").unwrap();
    assert_eq!(h1.interfaces.len(), 1);
    assert_eq!(h1.interfaces[0].name, "h1-eth0");
    assert_eq!(h1.interfaces[0].ifindex, FIRST_IFINDEX);
    assert_eq!(h1.interfaces[0].addresses[0].to_string(), "10.0.0.1/8");
    let s1 = &p.switches[0];
    let ports: Vec<_> = s1
        .ports
        .iter()
        .map(|i| (i.name.as_str(), i.ifindex))
        .collect();
    assert_eq!(ports, [("s1-eth1", 11), ("s1-eth2", 12), ("s1-eth3", 13)]);
    // The switch end is created first, from the switch's namespace.
    assert_eq!(p.links[0].a.node, "s1");
    assert_eq!(p.links[0].b.iface, "h1-eth0");
    let names = p.names();
    assert!(names.contains(&("10.0.0.3".parse().unwrap(), "h3".into())));
    assert!(names.contains(&("10.0.0.50".parse().unwrap(), "vip".into())));
}

#[test]
fn linear_chains_switches() {
    let p = resolve(&builtin("linear,3").unwrap()).unwrap();
    let s2: Vec<_> = p.switches[1]
        .ports
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(s2, ["s2-eth1", "s2-eth2", "s2-eth3"]);
    assert_eq!(p.links.len(), 5);
}

#[test]
fn single50_has_no_vip_alias_clash() {
    let p = resolve(&builtin("single,50").unwrap()).unwrap();
    assert!(p.aliases.is_empty());
    assert_eq!(p.hosts.len(), 50);
}

#[test]
fn router_fixture_batches_iptables_per_table() {
    let p = resolve(&Topology::from_file(&fixtures().join("router.toml")).unwrap()).unwrap();
    let r = p.host("router").unwrap();
    assert_eq!(
        r.interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["router-eth0", "router-eth1"]
    );
    assert_eq!(r.interfaces[1].mtu, Some(1500));
    let batch = Plan::iptables_batch(r).unwrap();
    assert_eq!(
        batch,
        "*nat\n-A POSTROUTING -o router-eth1 -j MASQUERADE\nCOMMIT\n*filter\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n"
    );
    assert_eq!(
        p.host("client").unwrap().default_route,
        Some("10.1.0.1".parse().unwrap())
    );
    assert_eq!(
        p.host("server").unwrap().loopback[0].to_string(),
        "10.2.0.50/32"
    );
    assert_eq!(
        r.sysctls,
        [Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into()
        }]
    );
}

#[test]
fn iptables_rules_convert_to_restore_lines() {
    let r = parse_iptables_rule(r#"iptables -I INPUT -m comment --comment "a b" -j DROP"#).unwrap();
    assert_eq!(
        (r.table.as_str(), r.line.as_str()),
        ("filter", r#"-I INPUT -m comment --comment "a b" -j DROP"#)
    );
    assert_eq!(
        parse_iptables_rule("-t raw -N TRACEME").unwrap().line,
        ":TRACEME - [0:0]"
    );
    assert_eq!(
        parse_iptables_rule("-P FORWARD DROP").unwrap().line,
        ":FORWARD DROP [0:0]"
    );
    assert!(parse_iptables_rule("-t bogus -A X -j ACCEPT").is_err());
    assert!(parse_iptables_rule("-A").is_err());
    assert!(parse_iptables_rule("-A INPUT --comment \"open").is_err());
}

/// Each file in fixtures/topologies/invalid starts with `# error: <the exact message>`.
#[test]
fn invalid_fixtures_report_file_line_and_field() {
    let dir = fixtures().join("invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{} lacks an `# error:` first line", path.display()))
            .replace("{file}", &path.display().to_string());
        let got = Topology::from_file(&path).and_then(|t| resolve(&t).map(|_| ()));
        match got {
            Ok(()) => panic!("{} resolved, expected: {expected}", path.display()),
            Err(e) => assert_eq!(e.to_string(), expected, "in {}", path.display()),
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} invalid fixtures");
}

#[test]
fn auto_named_host_interfaces_skip_used_names() {
    let text = r#"links = [["h1:eth0", "s1"], ["h1", "s2"]]
[switches.s1]
[switches.s2]
[hosts.h1]
"#;
    let t = Topology::parse(
        text,
        Origin::File {
            path: "t.toml".into(),
            text: text.into(),
        },
    )
    .unwrap();
    let p = resolve(&t).unwrap();
    let names: Vec<_> = p.hosts[0]
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["h1-eth0", "h1-eth1"]);
}
