//! The balancer's NFQUEUE rules in the filter table's INPUT chain, tagged with an iptables
//! comment (`lb:<vip>`) so that a restart after a crash finds and removes stale ones first, and a
//! stop removes exactly its own. Like Caplance, one rule per protocol, inserted at the top.

use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

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
}

impl QueueRules {
    /// The comment that marks our rules.
    pub fn tag(&self) -> String {
        format!("lb:{}", self.vip)
    }

    /// The rule specifications (after `-I INPUT`), one per protocol.
    pub fn specs(&self) -> Vec<Vec<String>> {
        self.protocols
            .iter()
            .map(|proto| {
                let mut r: Vec<String> = vec![
                    "-d".into(),
                    format!("{}/32", self.vip),
                    "-p".into(),
                    proto.clone(),
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
                    "-j".into(),
                    "NFQUEUE".into(),
                ]);
                if self.queues > 1 {
                    let last = self.queue + self.queues - 1;
                    r.extend(["--queue-balance".into(), format!("{}:{last}", self.queue)]);
                } else {
                    r.extend(["--queue-num".into(), self.queue.to_string()]);
                }
                if self.bypass {
                    r.push("--queue-bypass".into());
                }
                r
            })
            .collect()
    }

    /// Removes stale rules carrying our tag, then inserts ours.
    pub fn install(&self) -> Result<()> {
        let stale = remove_tagged(&self.tag())?;
        if stale > 0 {
            tracing::warn!(
                rules = stale,
                "removed stale NFQUEUE rules of an earlier run"
            );
        }
        for spec in self.specs() {
            let mut args = vec!["-w".to_string(), "-I".into(), "INPUT".into()];
            args.extend(spec);
            iptables(&args)?;
        }
        Ok(())
    }

    /// Removes our rules (all rules carrying our tag).
    pub fn remove(&self) -> Result<usize> {
        remove_tagged(&self.tag())
    }
}

fn iptables(args: &[String]) -> Result<String> {
    let out = Command::new("iptables")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "iptables is not installed (run ci/setup.sh, or apt-get install iptables)"
                )
            }
            _ => anyhow::anyhow!("run iptables: {e}"),
        })?;
    if !out.status.success() {
        bail!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes every INPUT rule whose comment is `tag`; returns how many.
pub fn remove_tagged(tag: &str) -> Result<usize> {
    let listing =
        iptables(&["-w".into(), "-S".into(), "INPUT".into()]).context("list INPUT rules")?;
    let mut removed = 0;
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let tagged = words
            .windows(2)
            .any(|w| w[0] == "--comment" && w[1].trim_matches('"') == tag);
        if !tagged || words.first() != Some(&"-A") {
            continue;
        }
        let mut args: Vec<String> = vec!["-w".into(), "-D".into()];
        args.extend(words[1..].iter().map(|w| w.trim_matches('"').to_string()));
        iptables(&args)?;
        removed += 1;
    }
    Ok(removed)
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
        };
        let specs = r.specs();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0].join(" "),
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
        };
        assert_eq!(
            r.specs()[0].join(" "),
            "-d 10.0.0.50/32 -p udp -m multiport --dports 53,8080 -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-balance 4:5 --queue-bypass"
        );
    }
}
