//! Evaluation: packets through the rules the project uses, and the errors for what it does not.

use netfilter_model::{
    CtState, Effect, Hook, MarkOp, Nat, NatTo, PacketView, Proto, QueueSpec, RuleError, Ruleset,
    Table, TableId, Verdict, iptables, nft,
};
use std::net::Ipv4Addr;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pkt(src: &str, dst: &str, proto: Proto, sport: u16, dport: u16) -> PacketView {
    PacketView::new(ip(src), ip(dst), proto, sport, dport)
}

fn host(rules: &[&str]) -> Ruleset {
    Ruleset::load(rules.iter().copied(), None).unwrap()
}

const FILTER: TableId = TableId::Ip(Table::Filter);
const NAT: TableId = TableId::Ip(Table::Nat);
const MANGLE: TableId = TableId::Ip(Table::Mangle);
const RAW: TableId = TableId::Ip(Table::Raw);

#[test]
fn nfqueue_rule_queues_tcp_to_the_vip_only() {
    let mut h = host(&[
        "-w -t filter -I INPUT -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
    ]);
    let to_vip = pkt("10.0.0.3", "10.0.0.50", Proto::Tcp, 40000, 8080);
    let d = h.traverse(Hook::Input, &FILTER, &to_vip, 0);
    assert_eq!(
        d.verdict,
        Verdict::Queue {
            num: 0,
            bypass: false
        }
    );
    assert_eq!(d.rule.unwrap().position, 1);
    let to_host = pkt("10.0.0.3", "10.0.0.1", Proto::Tcp, 40000, 8080);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &to_host, 0).verdict,
        Verdict::Accept
    );
    let udp = pkt("10.0.0.3", "10.0.0.50", Proto::Udp, 40000, 8080);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &udp, 0).verdict,
        Verdict::Accept
    );
}

#[test]
fn queue_bypass_is_reported_with_the_queue() {
    let mut h = host(&[
        "-w -t filter -I INPUT -d 10.0.0.51/32 -p tcp -m comment --comment lb:10.0.0.51 -j NFQUEUE --queue-num 1 --queue-bypass",
    ]);
    let p = pkt("10.0.0.3", "10.0.0.51", Proto::Tcp, 1, 2);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &p, 0).verdict,
        Verdict::Queue {
            num: 1,
            bypass: true
        }
    );
}

#[test]
fn queue_balance_spreads_by_flow_hash() {
    let mut h = host(&[
        "-w -t filter -I INPUT -d 10.0.0.50/32 -p tcp --dport 8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-balance 0:3",
    ]);
    let p = pkt("10.0.0.3", "10.0.0.50", Proto::Tcp, 1, 8080);
    let q = |h: &mut Ruleset, hash| match h.traverse(Hook::Input, &FILTER, &p, hash).verdict {
        Verdict::Queue { num, .. } => num,
        v => panic!("{v:?}"),
    };
    assert_eq!(q(&mut h, 0), 0);
    assert_eq!(q(&mut h, 0x4000_0000), 1);
    assert_eq!(q(&mut h, 0x8000_0000), 2);
    assert_eq!(q(&mut h, u32::MAX), 3);
    // The same hash always gives the same queue.
    assert_eq!(q(&mut h, 0x9abc_def0), q(&mut h, 0x9abc_def0));
    let spec = QueueSpec {
        first: 4,
        count: 2,
        bypass: false,
        balance: true,
    };
    assert_eq!((spec.queue_for(0), spec.queue_for(u32::MAX)), (4, 5));
}

#[test]
fn multiport_queues_the_listed_ports_only() {
    let mut h = host(&[
        "-w -t filter -I INPUT -d 10.0.0.50/32 -p udp -m multiport --dports 53,8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-balance 4:5 --queue-bypass",
    ]);
    for (port, queued) in [(53, true), (8080, true), (80, false)] {
        let p = pkt("10.0.0.3", "10.0.0.50", Proto::Udp, 5000, port);
        let v = h.traverse(Hook::Input, &FILTER, &p, 0).verdict;
        assert_eq!(
            matches!(
                v,
                Verdict::Queue {
                    num: 4,
                    bypass: true
                }
            ),
            queued,
            "port {port}"
        );
    }
}

#[test]
fn masquerade_applies_on_the_output_interface_only() {
    let mut h = host(&["iptables -t nat -A POSTROUTING -o router-eth1 -j MASQUERADE"]);
    let mut p = pkt("10.1.0.2", "10.2.0.2", Proto::Udp, 5000, 9000);
    p.out_iface = Some("router-eth1".into());
    let d = h.traverse(Hook::Postrouting, &NAT, &p, 0);
    assert_eq!(
        (d.verdict, d.nat),
        (Verdict::Accept, Some(Nat::Masquerade(None)))
    );
    p.out_iface = Some("router-eth0".into());
    assert_eq!(h.traverse(Hook::Postrouting, &NAT, &p, 0).nat, None);
}

#[test]
fn nat_chains_see_only_the_first_packet_of_a_connection() {
    let mut h = host(&["-t nat -A POSTROUTING -o router-eth1 -j MASQUERADE"]);
    let mut p = pkt("10.1.0.2", "10.2.0.2", Proto::Udp, 5000, 9000);
    p.out_iface = Some("router-eth1".into());
    p.ct = CtState::Established;
    assert_eq!(h.traverse(Hook::Postrouting, &NAT, &p, 0).nat, None);
}

#[test]
fn forward_queue_and_policy_drop() {
    let mut h = host(&[
        "-P FORWARD DROP",
        "-A FORWARD -p udp --dport 9000 -j NFQUEUE --queue-num 0",
    ]);
    let p = pkt("10.1.0.2", "10.2.0.2", Proto::Udp, 5000, 9000);
    assert_eq!(
        h.traverse(Hook::Forward, &FILTER, &p, 0).verdict,
        Verdict::Queue {
            num: 0,
            bypass: false
        }
    );
    let other = pkt("10.1.0.2", "10.2.0.2", Proto::Udp, 5000, 9001);
    let d = h.traverse(Hook::Forward, &FILTER, &other, 0);
    assert_eq!((d.verdict, d.rule), (Verdict::Drop, None));
}

#[test]
fn numgen_alternates_between_the_two_backends() {
    let text = include_str!("corpus.txt");
    let start = text.find("table inet udpq").unwrap();
    let end = start + text[start..].find(">>>").unwrap();
    let mut h = Ruleset::load([], Some(&text[start..end])).unwrap();
    let table = TableId::Nft {
        family: netfilter_model::NftFamily::Inet,
        name: "udpq".into(),
    };
    let p = pkt("10.0.1.99", "10.6.6.6", Proto::Udp, 4000, 12345);
    let mut got = Vec::new();
    for _ in 0..4 {
        let d = h.traverse(Hook::Prerouting, &table, &p, 0);
        match d.nat {
            Some(Nat::Dnat(NatTo { lo, .. })) => got.push(lo.to_string()),
            n => panic!("{n:?}"),
        }
    }
    assert_eq!(got, ["10.0.2.99", "10.0.3.99", "10.0.2.99", "10.0.3.99"]);
    // Another port: no DNAT, and the counter does not move.
    let other = pkt("10.0.1.99", "10.6.6.6", Proto::Udp, 4000, 12346);
    assert_eq!(h.traverse(Hook::Prerouting, &table, &other, 0).nat, None);
    // The nft chain runs between mangle and the iptables nat chain (priority dstnat - 5).
    let chains = h.chains_at(Hook::Prerouting);
    assert_eq!(chains[0].priority, -105);
}

#[test]
fn hooks_run_tables_in_priority_order() {
    let mut h = host(&[
        "-w -t raw -I PREROUTING -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j CT --notrack",
        "-w -t filter -I FORWARD -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j ACCEPT",
        "-w -t mangle -I PREROUTING -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
        "-t nat -A PREROUTING -j ACCEPT",
    ]);
    let order: Vec<(TableId, i32)> = h
        .chains_at(Hook::Prerouting)
        .into_iter()
        .map(|c| (c.table, c.priority))
        .collect();
    assert_eq!(order, [(RAW, -300), (MANGLE, -150), (NAT, -100)]);
    let p = pkt("10.0.0.4", "10.0.0.50", Proto::Tcp, 1, 8080);
    let walk = h.walk(Hook::Prerouting, &p, 0);
    assert_eq!(walk.len(), 2, "stops at the queue: {walk:?}");
    assert_eq!(walk[0].1.effects, [Effect::Notrack]);
    assert_eq!(
        walk[1].1.verdict,
        Verdict::Queue {
            num: 0,
            bypass: false
        }
    );
}

#[test]
fn tee_copies_and_the_packet_goes_on() {
    let mut h = host(&["-t mangle -A PREROUTING -d 10.0.0.50/32 -j TEE --gateway 10.0.0.2"]);
    let p = pkt("10.0.0.3", "10.0.0.50", Proto::Tcp, 1, 80);
    let d = h.traverse(Hook::Prerouting, &MANGLE, &p, 0);
    assert_eq!(
        (d.verdict, d.effects),
        (Verdict::Accept, vec![Effect::Tee(ip("10.0.0.2"))])
    );
}

#[test]
fn set_xmark_keeps_bits_outside_the_mask() {
    assert_eq!(
        MarkOp::SetXmark {
            value: 0x5,
            mask: 0xf
        }
        .apply(0xabcd_1234),
        0xabcd_1235
    );
    assert_eq!(
        MarkOp::SetMark {
            value: 0x10,
            mask: 0xf0
        }
        .apply(0xff),
        0x1f
    );
    assert_eq!(
        MarkOp::SetXmark {
            value: 0x1,
            mask: 0x0
        }
        .apply(0x3),
        0x2,
        "xor when the mask is 0"
    );
    assert_eq!(MarkOp::And(0xf0).apply(0xff), 0xf0);
    assert_eq!(MarkOp::Or(0x100).apply(0xff), 0x1ff);
    let mut h = host(&[
        "-t mangle -A PREROUTING -j MARK --set-xmark 0x5/0xf",
        "-t mangle -A PREROUTING -m mark --mark 0x5/0xf -j MARK --or-mark 0x100",
    ]);
    let mut p = pkt("1.1.1.1", "2.2.2.2", Proto::Icmp, 0, 0);
    p.mark = 0xabcd_1234;
    let d = h.traverse(Hook::Prerouting, &MANGLE, &p, 0);
    assert_eq!(d.mark, 0xabcd_1335);
    assert_eq!(d.effects.len(), 2);
}

#[test]
fn user_chains_jump_and_return() {
    let mut h = host(&[
        "-N CHECK",
        "-A CHECK -s 10.9.0.0/16 -j DROP",
        "-A CHECK -j RETURN",
        "-A INPUT -p tcp -j CHECK",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
        "-A INPUT -j REJECT --reject-with icmp-port-unreachable",
    ]);
    let bad = pkt("10.9.1.1", "10.0.0.1", Proto::Tcp, 1, 22);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &bad, 0).verdict,
        Verdict::Drop
    );
    let ok = pkt("10.8.1.1", "10.0.0.1", Proto::Tcp, 1, 22);
    let d = h.traverse(Hook::Input, &FILTER, &ok, 0);
    assert_eq!(
        (d.verdict, d.rule.map(|r| r.position)),
        (Verdict::Accept, Some(2))
    );
    let other = pkt("10.8.1.1", "10.0.0.1", Proto::Tcp, 1, 23);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &other, 0).verdict,
        Verdict::Reject(Some("icmp-port-unreachable".into()))
    );
}

#[test]
fn insert_goes_on_top_and_negation_inverts() {
    let mut h = host(&[
        "-A INPUT -j ACCEPT",
        "-I INPUT ! -s 10.0.0.0/8 -j DROP",
        "-I INPUT 2 -m conntrack --ctstate INVALID -j DROP",
    ]);
    let outside = pkt("192.168.1.1", "10.0.0.1", Proto::Udp, 1, 2);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &outside, 0).verdict,
        Verdict::Drop
    );
    let mut inside = pkt("10.1.1.1", "10.0.0.1", Proto::Udp, 1, 2);
    assert_eq!(
        h.traverse(Hook::Input, &FILTER, &inside, 0).verdict,
        Verdict::Accept
    );
    inside.ct = CtState::Invalid;
    let d = h.traverse(Hook::Input, &FILTER, &inside, 0);
    assert_eq!((d.verdict, d.rule.unwrap().position), (Verdict::Drop, 2));
}

#[test]
fn interface_wildcard_matches_a_prefix() {
    let mut h = host(&["-A FORWARD -i veth+ -j DROP"]);
    let mut p = pkt("1.1.1.1", "2.2.2.2", Proto::Udp, 1, 2);
    p.in_iface = Some("veth12".into());
    assert_eq!(
        h.traverse(Hook::Forward, &FILTER, &p, 0).verdict,
        Verdict::Drop
    );
    p.in_iface = Some("eth0".into());
    assert_eq!(
        h.traverse(Hook::Forward, &FILTER, &p, 0).verdict,
        Verdict::Accept
    );
}

#[test]
fn nft_filter_chain_with_sets_and_states() {
    let mut h = Ruleset::load(
        [],
        Some(
            "table ip fw {\n  chain input {\n    type filter hook input priority filter; policy drop;\n    ct state established,related accept\n    tcp dport { 22, 8000-8100 } counter accept  # admin\n    iifname \"lo\" accept\n  }\n}\n",
        ),
    )
    .unwrap();
    let t = TableId::Nft {
        family: netfilter_model::NftFamily::Ip,
        name: "fw".into(),
    };
    let v = |h: &mut Ruleset, p: &PacketView| h.traverse(Hook::Input, &t, p, 0).verdict;
    assert_eq!(
        v(&mut h, &pkt("1.1.1.1", "2.2.2.2", Proto::Tcp, 1, 8050)),
        Verdict::Accept
    );
    assert_eq!(
        v(&mut h, &pkt("1.1.1.1", "2.2.2.2", Proto::Tcp, 1, 8200)),
        Verdict::Drop
    );
    assert_eq!(
        v(&mut h, &pkt("1.1.1.1", "2.2.2.2", Proto::Udp, 1, 22)),
        Verdict::Drop
    );
    let mut est = pkt("1.1.1.1", "2.2.2.2", Proto::Udp, 1, 9);
    est.ct = CtState::Established;
    assert_eq!(v(&mut h, &est), Verdict::Accept);
}

#[test]
fn unknown_match_is_an_error_naming_it() {
    let e = iptables::parse("-A INPUT -m recent --set").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unsupported match "-m recent" in "-A INPUT -m recent --set""#
    );
    assert_eq!(
        e.on_host("h1").to_string(),
        r#"h1: unsupported match "-m recent" in "-A INPUT -m recent --set""#
    );
}

#[test]
fn unknown_target_and_option_are_errors_naming_them() {
    let e = iptables::parse("-t mangle -A OUTPUT -p tcp -j TCPMSS --set-mss 1432").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unsupported target "-j TCPMSS" in "-t mangle -A OUTPUT -p tcp -j TCPMSS --set-mss 1432""#
    );
    let e = iptables::parse("-A INPUT -j NFQUEUE --queue-cpu-fanout").unwrap_err();
    assert!(
        matches!(e, RuleError::Unsupported { what: "option", .. }),
        "{e}"
    );
    assert!(iptables::parse("-A INPUT -p tcp --tcp-flags SYN SYN -j DROP").is_err());
    let e = iptables::parse("iptables -X").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unsupported command "-X" in "iptables -X""#
    );
    assert!(
        iptables::parse("-t nat -j ACCEPT")
            .unwrap_err()
            .to_string()
            .contains("-A, -I, -N or -P")
    );
}

#[test]
fn unknown_nft_statement_is_an_error_naming_it() {
    let e = nft::parse("table ip t {\n chain c {\n  type filter hook input priority 0;\n  limit rate 1/second accept\n }\n}\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unsupported statement "limit" in "limit rate 1/second accept""#
    );
    let e = nft::parse("flush ruleset\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"unsupported nft statement "flush""#),
        "{e}"
    );
    assert!(nft::parse("table ip6 t { }").is_err());
}

#[test]
fn a_jump_to_a_missing_chain_is_refused_when_applied() {
    let e = Ruleset::load(
        [
            "-A INPUT -p tcp --dport 22 -j ACCEPT",
            "-A INPUT -p tcp -j NOSUCHCHAIN",
        ],
        None,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"a jump to chain `NOSUCHCHAIN`, which does not exist in table filter in "-A INPUT -p tcp -j NOSUCHCHAIN""#
    );
}

#[test]
fn targets_in_the_wrong_table_or_hook_are_refused() {
    for rules in [
        &["-A INPUT -j MASQUERADE"][..],
        &["-t nat -A PREROUTING -j MASQUERADE"],
        &["-t nat -A POSTROUTING -j DNAT --to-destination 1.2.3.4"],
        &["-t mangle -A PREROUTING -j CT --notrack"],
        &["-N A", "-N B", "-A A -j B", "-A B -j A"],
        &["-A INPUT -j ACCEPT", "-I INPUT 3 -j DROP"],
    ] {
        assert!(
            Ruleset::load(rules.iter().copied(), None).is_err(),
            "{rules:?}"
        );
    }
}

#[test]
fn snat_and_dnat_carry_their_addresses_and_ports() {
    let mut h = host(&[
        "-t nat -A PREROUTING -d 10.0.0.50 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080",
        "-t nat -A POSTROUTING -s 10.1.0.0/24 -j SNAT --to-source 10.2.0.1-10.2.0.3:1000-2000",
    ]);
    let p = pkt("10.1.0.2", "10.0.0.50", Proto::Tcp, 5000, 80);
    let d = h.traverse(Hook::Prerouting, &NAT, &p, 0);
    assert_eq!(
        d.nat.unwrap().clone(),
        Nat::Dnat(NatTo::parse("10.0.0.2:8080").unwrap())
    );
    let d = h.traverse(Hook::Postrouting, &NAT, &p, 0);
    assert_eq!(
        d.nat,
        Some(Nat::Snat(
            NatTo::parse("10.2.0.1-10.2.0.3:1000-2000").unwrap()
        ))
    );
}

#[test]
fn nft_port_match_implies_its_protocol() {
    let text = "table ip t {\n chain c {\n  type filter hook input priority 0; policy accept;\n  meta l4proto udp tcp dport 80 drop\n }\n}\n";
    let mut h = Ruleset::load([], Some(text)).unwrap();
    let t = TableId::Nft {
        family: netfilter_model::NftFamily::Ip,
        name: "t".into(),
    };
    let udp = pkt("1.1.1.1", "2.2.2.2", Proto::Udp, 1, 80);
    assert_eq!(
        h.traverse(Hook::Input, &t, &udp, 0).verdict,
        Verdict::Accept
    );
}

#[test]
fn goto_returns_to_the_caller_of_the_calling_chain() {
    let mut h = host(&[
        "-N OUTER",
        "-N INNER",
        "-A INNER -j RETURN",
        "-A OUTER -g INNER",
        "-A OUTER -j DROP",
        "-A INPUT -j OUTER",
        "-A INPUT -j REJECT",
    ]);
    // INNER returns past OUTER's DROP (goto pushed no return point) to INPUT's REJECT.
    let p = pkt("1.1.1.1", "2.2.2.2", Proto::Udp, 1, 2);
    let d = h.traverse(Hook::Input, &FILTER, &p, 0);
    assert_eq!(
        (d.verdict, d.rule.map(|r| r.chain)),
        (Verdict::Reject(None), Some("INPUT".into()))
    );
}

#[test]
fn list_rules_is_iptables_s_and_tagged_rules_go() {
    let mut r = Ruleset::load(
        [
            "-t filter -I INPUT -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
            "-t filter -A INPUT -p udp --dport 53 -j ACCEPT",
            "-t filter -N audit",
        ],
        None,
    )
    .expect("load");
    assert_eq!(
        r.list_rules(Table::Filter, Some("INPUT")).expect("INPUT"),
        [
            "-P INPUT ACCEPT",
            "-A INPUT -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
            "-A INPUT -p udp --dport 53 -j ACCEPT",
        ]
    );
    let all = r.list_rules(Table::Filter, None).expect("filter");
    assert_eq!(
        all[..4],
        [
            "-P INPUT ACCEPT",
            "-P FORWARD ACCEPT",
            "-P OUTPUT ACCEPT",
            "-N audit"
        ]
    );
    assert_eq!(r.list_rules(Table::Filter, Some("nope")), None);
    assert_eq!(
        r.list_rules(Table::Nat, Some("POSTROUTING")).expect("nat"),
        ["-P POSTROUTING ACCEPT"]
    );
    assert_eq!(r.remove_tagged("lb:10.0.0.50"), 1);
    assert_eq!(r.remove_tagged("lb:10.0.0.50"), 0);
    assert_eq!(
        r.list_rules(Table::Filter, Some("INPUT"))
            .expect("INPUT")
            .len(),
        2
    );
}
