//! Installing and removing the balancer's NFQUEUE rules ([`lb_core::rules::QueueRules`], the
//! rules as data) with `iptables`.

use anyhow::{Context, Result, bail};
use lb_core::rules::{CHAINS, QueueRules};
use std::process::{Command, Stdio};

/// Putting [`QueueRules`] into the kernel and taking them out.
pub trait Apply {
    /// Removes stale rules carrying our tag, then inserts ours.
    fn install(&self) -> Result<()>;
    /// Removes our rules (all rules carrying our tag).
    fn remove(&self) -> Result<usize>;
}

impl Apply for QueueRules {
    /// Removes stale rules carrying our tag, then inserts ours.
    fn install(&self) -> Result<()> {
        let stale = remove_tagged(&self.tag())?;
        if stale > 0 {
            tracing::warn!(
                rules = stale,
                "removed stale NFQUEUE rules of an earlier run"
            );
        }
        for (table, chain, spec) in self.specs() {
            let mut args: Vec<String> = vec!["-w".into(), "-t".into(), table.into()];
            args.extend(["-I".into(), chain.into()]);
            args.extend(spec);
            iptables(&args)?;
        }
        Ok(())
    }

    /// Removes our rules (all rules carrying our tag).
    fn remove(&self) -> Result<usize> {
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

/// Deletes every rule whose comment is `tag` from the chains we use; returns how many.
pub fn remove_tagged(tag: &str) -> Result<usize> {
    let mut removed = 0;
    for (table, chain) in CHAINS {
        let listing = iptables(&[
            "-w".into(),
            "-t".into(),
            table.into(),
            "-S".into(),
            chain.into(),
        ])
        .with_context(|| format!("list {table} {chain} rules"))?;
        for line in listing.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let tagged = words
                .windows(2)
                .any(|w| w[0] == "--comment" && w[1].trim_matches('"') == tag);
            if !tagged || words.first() != Some(&"-A") {
                continue;
            }
            let mut args: Vec<String> = vec!["-w".into(), "-t".into(), table.into(), "-D".into()];
            args.extend(words[1..].iter().map(|w| w.trim_matches('"').to_string()));
            iptables(&args)?;
            removed += 1;
        }
    }
    Ok(removed)
}
