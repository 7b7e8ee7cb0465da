//! The balancer's NFQUEUE rules as data: which iptables rules `lb server` installs for its
//! VIP, in order, tagged with an iptables comment (`lb:<vip>`) so that a restart after a crash
//! finds and removes stale ones first, and a stop removes exactly its own. Like Caplance, one
//! rule per protocol, inserted at the top of filter INPUT; in `dsr-kernel` mode in mangle
//! PREROUTING instead (the packet must be marked before the routing decision that forwards it),
//! with a raw PREROUTING NOTRACK rule and a filter FORWARD rule that accepts what the balancer
//! forwards (see [`QueueRules::specs`]). Pure: `lb` runs `iptables` with them, the simulator
//! evaluates the same strings.

use std::net::Ipv4Addr;

/// Where the queue rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// filter INPUT: after the routing decision, for packets delivered locally (the VIP is
    /// local); `lb` forwards them itself and drops the originals.
    Input,
    /// mangle PREROUTING: before the routing decision, so an ACCEPT verdict's mark picks the
    /// route (`dsr-kernel`).
    Prerouting,
}

/// Every (table, chain) that may hold a rule of ours, for the stale-rule sweep.
pub const CHAINS: [(&str, &str); 4] = [
    ("filter", "INPUT"),
    ("filter", "FORWARD"),
    ("mangle", "PREROUTING"),
    ("raw", "PREROUTING"),
];

/// What the rules send to user space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRules {
    /// The VIP.
    pub vip: Ipv4Addr,
    /// Protocols queued (`tcp`, `udp`).
    pub protocols: Vec<String>,
    /// Destination ports; empty: all.
    pub ports: Vec<u16>,
    /// First queue number.
    pub queue: u16,
    /// Number of queues (more than one: `--queue-balance`, with the flow hash spreading
    /// flows, each flow always to the same queue).
    pub queues: u16,
    /// `--queue-bypass`: with no program bound to the queue, the kernel accepts the packet
    /// instead of dropping it.
    pub bypass: bool,
    /// Where the queue rules go.
    pub hook: Hook,
}

/// One rule: table, chain, and the specification after `-I <chain>`.
pub type RuleSpec = (&'static str, &'static str, Vec<String>);

impl QueueRules {
    /// The comment that marks our rules.
    pub fn tag(&self) -> String {
        format!("lb:{}", self.vip)
    }

    /// `-d VIP/32 -p proto [ports] -m comment --comment lb:VIP`.
    fn matches(&self, proto: &str) -> Vec<String> {
        let mut r: Vec<String> = vec![
            "-d".into(),
            format!("{}/32", self.vip),
            "-p".into(),
            proto.to_string(),
        ];
        match self.ports.len() {
            0 => {}
            1 => r.extend(["--dport".into(), self.ports[0].to_string()]),
            _ => {
                let list: Vec<String> = self.ports.iter().map(u16::to_string).collect();
                r.extend([
                    "-m".into(),
                    "multiport".into(),
                    "--dports".into(),
                    list.join(","),
                ]);
            }
        }
        r.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            self.tag(),
        ]);
        r
    }

    /// The rules in the order they are inserted: in PREROUTING mode first one raw PREROUTING
    /// `CT --notrack` rule and one filter FORWARD ACCEPT rule per protocol, then one queue rule
    /// per protocol. NOTRACK: the balancer sees only the client's half of each connection, so
    /// conntrack would hold an entry per flow and call the client's second TCP segment
    /// INVALID (which a firewall's `ct state invalid drop` drops); the rule also makes the
    /// kernel reassemble fragments before the queue (defragmentation runs for every packet
    /// once a conntrack target exists), so a fragmented datagram is queued whole. FORWARD
    /// first: nothing is queued, accepted and then refused by a FORWARD policy of DROP.
    pub fn specs(&self) -> Vec<RuleSpec> {
        let (table, chain) = match self.hook {
            Hook::Input => ("filter", "INPUT"),
            Hook::Prerouting => ("mangle", "PREROUTING"),
        };
        let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<String>>();
        let mut queue = words(&["-j", "NFQUEUE"]);
        if self.queues > 1 {
            let last = self.queue + self.queues - 1;
            queue.extend(["--queue-balance".into(), format!("{}:{last}", self.queue)]);
        } else {
            queue.extend(["--queue-num".into(), self.queue.to_string()]);
        }
        if self.bypass {
            queue.push("--queue-bypass".into());
        }
        // (table, chain, target), each with one rule per protocol, in this order.
        let mut targets = Vec::new();
        if self.hook == Hook::Prerouting {
            targets.push(("raw", "PREROUTING", words(&["-j", "CT", "--notrack"])));
            targets.push(("filter", "FORWARD", words(&["-j", "ACCEPT"])));
        }
        targets.push((table, chain, queue));
        targets
            .iter()
            .flat_map(|(table, chain, target)| {
                self.protocols.iter().map(move |proto| {
                    let mut r = self.matches(proto);
                    r.extend(target.iter().cloned());
                    (*table, *chain, r)
                })
            })
            .collect()
    }
}

/// The fast path's nftables table (`lb server --fast-path`): a map from flow key to backend
/// address, and a chain at the ingress of the VIP's interface that forwards a packet of a
/// flow in the map to its backend itself (`fwd ip to … device`: the neighbour layer puts the
/// backend's MAC on the frame and the TTL is decremented, as routing would), before the IP
/// stack, NFQUEUE included, sees it. A packet of a flow not in the map, a fragment, and a TCP
/// segment with FIN or RST go on to the queue rules as before. `lb` fills the map
/// (`crate::decide::fastpath`); the kernel counts each element's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastPathRules {
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The interface the VIP's packets arrive on and the backends are reached through.
    pub ifname: String,
    /// Protocols balanced (`tcp`, `udp`).
    pub protocols: Vec<String>,
    /// Most flows the map holds: the connection table's capacity.
    pub size: usize,
}

/// The name of the fast path's map in its table.
pub const FLOW_MAP: &str = "flows";

impl FastPathRules {
    /// The table's name, `lb_` and the VIP (`lb_10_0_0_50`): one per balancer, so that a
    /// restart finds what a crashed run left.
    pub fn table(&self) -> String {
        format!("lb_{}", self.vip.to_string().replace('.', "_"))
    }

    /// The `nft -f` input that replaces any table of the same name (a crashed run's, whose
    /// flows are dropped: the next packet of each is decided again) with a fresh one.
    pub fn ruleset(&self) -> String {
        let table = self.table();
        let (vip, dev) = (self.vip, &self.ifname);
        let key = "ip saddr . ip daddr . meta l4proto . th sport . th dport";
        let fwd = format!("fwd ip to {key} map @{FLOW_MAP} device \"{dev}\"");
        let head = format!("ip daddr {vip} ip frag-off & 0x3fff == 0");
        let mut rules = Vec::new();
        for proto in &self.protocols {
            match proto.as_str() {
                "tcp" => rules.push(format!("{head} tcp flags & (fin | rst) == 0 {fwd}")),
                p => rules.push(format!("{head} meta l4proto {p} {fwd}")),
            }
        }
        format!(
            "table netdev {table}\ndelete table netdev {table}\ntable netdev {table} {{\n  map {FLOW_MAP} {{\n    type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service : ipv4_addr\n    size {}\n    counter\n  }}\n  chain ingress {{\n    type filter hook ingress device \"{dev}\" priority -500; policy accept;\n{}  }}\n}}\n",
            self.size,
            rules
                .iter()
                .map(|r| format!("    {r}\n"))
                .collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_protocol_with_tag_and_queue() {
        let r = QueueRules {
            vip: Ipv4Addr::new(10, 0, 0, 50),
            protocols: vec!["tcp".into(), "udp".into()],
            ports: vec![],
            queue: 0,
            queues: 1,
            bypass: false,
            hook: Hook::Input,
        };
        let specs = r.specs();
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].0, specs[0].1), ("filter", "INPUT"));
        assert_eq!(
            specs[0].2.join(" "),
            "-d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0"
        );
    }

    #[test]
    fn ports_balance_and_bypass() {
        let r = QueueRules {
            vip: Ipv4Addr::new(10, 0, 0, 50),
            protocols: vec!["udp".into()],
            ports: vec![53, 8080],
            queue: 4,
            queues: 2,
            bypass: true,
            hook: Hook::Input,
        };
        assert_eq!(
            r.specs()[0].2.join(" "),
            "-d 10.0.0.50/32 -p udp -m multiport --dports 53,8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-balance 4:5 --queue-bypass"
        );
    }

    #[test]
    fn prerouting_notracks_accepts_in_forward_and_queues_in_mangle() {
        let r = QueueRules {
            vip: Ipv4Addr::new(10, 0, 0, 50),
            protocols: vec!["tcp".into(), "udp".into()],
            ports: vec![8080],
            queue: 0,
            queues: 1,
            bypass: false,
            hook: Hook::Prerouting,
        };
        let lines: Vec<String> = r
            .specs()
            .into_iter()
            .map(|(t, c, spec)| format!("{t} {c} {}", spec.join(" ")))
            .collect();
        assert_eq!(
            lines,
            [
                "raw PREROUTING -d 10.0.0.50/32 -p tcp --dport 8080 -m comment --comment lb:10.0.0.50 -j CT --notrack",
                "raw PREROUTING -d 10.0.0.50/32 -p udp --dport 8080 -m comment --comment lb:10.0.0.50 -j CT --notrack",
                "filter FORWARD -d 10.0.0.50/32 -p tcp --dport 8080 -m comment --comment lb:10.0.0.50 -j ACCEPT",
                "filter FORWARD -d 10.0.0.50/32 -p udp --dport 8080 -m comment --comment lb:10.0.0.50 -j ACCEPT",
                "mangle PREROUTING -d 10.0.0.50/32 -p tcp --dport 8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
                "mangle PREROUTING -d 10.0.0.50/32 -p udp --dport 8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0",
            ]
        );
    }

    #[test]
    fn the_fast_path_forwards_open_flows_of_the_map_at_ingress() {
        let r = FastPathRules {
            vip: Ipv4Addr::new(10, 0, 0, 50),
            ifname: "h1-eth0".into(),
            protocols: vec!["tcp".into(), "udp".into()],
            size: 65536,
        };
        assert_eq!(r.table(), "lb_10_0_0_50");
        let text = r.ruleset();
        assert!(text.starts_with("table netdev lb_10_0_0_50\ndelete table netdev lb_10_0_0_50\n"));
        assert!(text.contains("type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service : ipv4_addr\n    size 65536\n    counter"));
        assert!(
            text.contains(
                "type filter hook ingress device \"h1-eth0\" priority -500; policy accept;"
            )
        );
        assert!(text.contains("    ip daddr 10.0.0.50 ip frag-off & 0x3fff == 0 tcp flags & (fin | rst) == 0 fwd ip to ip saddr . ip daddr . meta l4proto . th sport . th dport map @flows device \"h1-eth0\"\n"));
        assert!(text.contains(
            "    ip daddr 10.0.0.50 ip frag-off & 0x3fff == 0 meta l4proto udp fwd ip to"
        ));
    }
}
