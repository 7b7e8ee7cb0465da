//! `lab list`: labs, hosts, addresses, owner and age.

use anyhow::Result;
use lab::state::{StateRecord, now_ms};
use std::process::ExitCode;

pub fn list(json: bool) -> Result<ExitCode> {
    let all = StateRecord::all();
    if json {
        let recs: Vec<_> = all.into_iter().filter_map(|r| r.ok()).collect();
        println!("{}", serde_json::to_string_pretty(&recs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no labs");
    }
    for rec in all {
        match rec {
            Ok(r) => {
                let owner = match r.owner {
                    _ if r.half_done() => format!(
                        "{} (its {:?} process died: `lab clean` removes it)",
                        r.owner
                            .map_or("persistent".into(), |o| format!("pid {}", o.pid)),
                        r.status
                    ),
                    None if r.holder_gone() => {
                        "persistent (lab up; its holder is gone: `lab clean` removes it)".into()
                    }
                    None => "persistent (lab up)".to_string(),
                    Some(o) if o.alive() => format!("pid {}", o.pid),
                    Some(o) => format!("pid {} (gone: `lab clean` removes it)", o.pid),
                };
                let mut backend = match &r.mininet {
                    None => "native".to_string(),
                    Some(m) => format!("mininet ({})", m.switch.name()),
                };
                if let Some(u) = &r.userns {
                    backend.push_str(&format!(
                        ", rootless: user namespace of {} {}",
                        if u.dedicated { "holder" } else { "pid" },
                        u.holder.pid
                    ));
                }
                println!(
                    "{}  {}  {:?}  backend {}  owner {}  age {}  artifacts {}",
                    r.name,
                    r.plan.name,
                    r.status,
                    backend,
                    owner,
                    age(now_ms().saturating_sub(r.created_ms)),
                    r.artifact_dir.display()
                );
                print_hosts(&r);
            }
            Err(e) => println!("?  {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per host: name, addresses with interfaces, namespace.
pub fn print_hosts(r: &StateRecord) {
    for h in &r.plan.hosts {
        let mut addrs: Vec<String> = h
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(move |a| format!("{a} ({})", i.name)))
            .collect();
        addrs.extend(h.loopback.iter().map(|a| format!("{a} (lo)")));
        let ns = r
            .namespaces
            .iter()
            .find(|n| n.node == h.name)
            .map(|n| n.netns.as_str())
            .unwrap_or("?");
        println!("  {:<8} {:<40} netns {ns}", h.name, addrs.join(", "));
    }
    for s in &r.plan.switches {
        let place = match r.mininet.as_ref().and_then(|m| m.bridges.get(&s.name)) {
            Some(bridge) if r.userns.is_some() => {
                format!("the lab's stand-in root namespace (rootless), as {bridge}")
            }
            Some(bridge) => format!("root namespace, as {bridge}"),
            None => {
                let ns = r.namespaces.iter().find(|n| n.node == s.name);
                format!("netns {}", ns.map_or("?", |n| n.netns.as_str()))
            }
        };
        println!(
            "  {:<8} {:<40} {place}",
            s.name,
            format!("bridge, {} ports", s.ports.len())
        );
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
