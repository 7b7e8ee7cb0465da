//! Random token soup never panics the parsers, the ruleset or the evaluation.

use netfilter_model::{CtState, Hook, PacketView, Proto, Ruleset, iptables, nft};
use proptest::prelude::*;

const IPTABLES_WORDS: &[&str] = &[
    "iptables",
    "-t",
    "nat",
    "mangle",
    "raw",
    "filter",
    "-A",
    "-I",
    "-N",
    "-P",
    "INPUT",
    "FORWARD",
    "PREROUTING",
    "POSTROUTING",
    "OUTPUT",
    "X",
    "1",
    "0",
    "3",
    "!",
    "-s",
    "-d",
    "10.0.0.0/8",
    "10.0.0.50/32",
    "1.2.3.4",
    "-p",
    "tcp",
    "udp",
    "icmp",
    "all",
    "--dport",
    "--sport",
    "80",
    "1:65535",
    "65535:0",
    "-m",
    "multiport",
    "--dports",
    "53,8080",
    "comment",
    "--comment",
    "\"a b\"",
    "mark",
    "--mark",
    "0x1/0xff",
    "conntrack",
    "--ctstate",
    "NEW,ESTABLISHED",
    "state",
    "--state",
    "-i",
    "-o",
    "eth+",
    "-j",
    "-g",
    "ACCEPT",
    "DROP",
    "RETURN",
    "NFQUEUE",
    "--queue-num",
    "--queue-balance",
    "0:65535",
    "4:5",
    "--queue-bypass",
    "MASQUERADE",
    "--to-ports",
    "1000-2000",
    "SNAT",
    "--to-source",
    "DNAT",
    "--to-destination",
    "10.0.0.2:8080",
    "CT",
    "--notrack",
    "NOTRACK",
    "MARK",
    "--set-xmark",
    "--set-mark",
    "--and-mark",
    "TEE",
    "--gateway",
    "REJECT",
    "--reject-with",
    "LOG",
    "--log-prefix",
    "-w",
    "'",
    "\"",
    "\\",
    "-X",
    "DROPPED",
];

const NFT_WORDS: &[&str] = &[
    "table",
    "inet",
    "ip",
    "t",
    "{",
    "}",
    ";",
    ",",
    "\n",
    "chain",
    "c",
    "type",
    "filter",
    "nat",
    "hook",
    "prerouting",
    "input",
    "postrouting",
    "priority",
    "dstnat",
    "-",
    "+",
    "5",
    "-300",
    "policy",
    "accept",
    "drop",
    "saddr",
    "daddr",
    "10.0.0.1",
    "10.0.0.0/24",
    "udp",
    "tcp",
    "dport",
    "sport",
    "12345",
    "1-2",
    "!=",
    "==",
    "meta",
    "l4proto",
    "mark",
    "set",
    "0x10",
    "ct",
    "state",
    "new",
    "established",
    "counter",
    "dnat",
    "snat",
    "to",
    "numgen",
    "inc",
    "mod",
    "0",
    "2",
    "map",
    ":",
    "0:",
    "10.0.2.99",
    "queue",
    "num",
    "0-65535",
    "bypass",
    "flags",
    "masquerade",
    ":80",
    "notrack",
    "jump",
    "goto",
    "return",
    "log",
    "prefix",
    "\"x\"",
    "\"",
    "#",
    "iifname",
    "oifname",
    "\"eth*\"",
    "comment",
    "reject",
    "with",
];

fn soup(words: &'static [&'static str], sep: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(words), 0..24).prop_map(move |v| v.join(sep))
}

fn packet() -> impl Strategy<Value = PacketView> {
    (
        any::<u32>(),
        any::<u32>(),
        0u8..3,
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        0u8..5,
    )
        .prop_map(|(s, d, p, sp, dp, mark, ct)| {
            let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][p as usize];
            let mut v = PacketView::new(s.into(), d.into(), proto, sp, dp);
            v.mark = mark;
            v.in_iface = Some("eth0".into());
            v.out_iface = Some("eth1".into());
            v.ct = [
                CtState::New,
                CtState::Established,
                CtState::Related,
                CtState::Invalid,
                CtState::Untracked,
            ][ct as usize];
            v
        })
}

fn exercise(r: &mut Ruleset, p: &PacketView, hash: u32) {
    for hook in Hook::ALL {
        let _ = r.walk(hook, p, hash);
    }
}

proptest! {
    #[test]
    fn iptables_token_soup_never_panics(lines in prop::collection::vec(soup(IPTABLES_WORDS, " "), 1..6), p in packet(), hash in any::<u32>()) {
        let mut r = Ruleset::new();
        for line in &lines {
            if let Ok(cmd) = iptables::parse(line) {
                let _ = cmd.to_string();
                let _ = r.apply(&cmd);
            }
        }
        exercise(&mut r, &p, hash);
    }

    #[test]
    fn nft_token_soup_never_panics(text in soup(NFT_WORDS, " "), p in packet(), hash in any::<u32>()) {
        let mut r = Ruleset::new();
        if let Ok(cmds) = nft::parse(&text) {
            for cmd in &cmds {
                let _ = r.apply(cmd);
            }
        }
        exercise(&mut r, &p, hash);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        let _ = iptables::parse(&text);
        let _ = nft::parse(&text);
    }
}

#[test]
fn a_valid_nft_ruleset_inside_the_soup_vocabulary_evaluates() {
    let text = "table ip t {\n chain c {\n  type nat hook prerouting priority dstnat - 5; policy accept;\n  udp dport 12345 counter dnat to numgen inc mod 2 map { 0: 10.0.2.99, 1: 10.0.0.1 }\n }\n}\n";
    let mut r = Ruleset::load([], Some(text)).unwrap();
    let p = PacketView::new(
        "1.1.1.1".parse().unwrap(),
        "2.2.2.2".parse().unwrap(),
        Proto::Udp,
        1,
        12345,
    );
    let walk = r.walk(Hook::Prerouting, &p, 0);
    assert!(walk[0].1.nat.is_some(), "{walk:?}");
}
