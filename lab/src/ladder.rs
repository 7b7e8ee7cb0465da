//! Ladder (sequence) diagrams of captured packets: hosts as columns, one arrow per packet.
//!
//! A packet seen at several capture points (same addresses, IP id, ports, TCP numbers and
//! payload) is drawn once. Who sent it is the capture point that saw it leave
//! ([`PacketType::Outgoing`]), so a DSR reply whose source address is the VIP is drawn from the
//! backend that sent it; who received it is a capture point that saw it arrive. Without such
//! an observation the address's name stands in (`vip`, `h3`, or the number). A host that sees
//! its own packet again on `lo` (the agent writing a decapsulated packet back into its stack)
//! adds no arrow; a packet seen only on `lo` is drawn from the host to itself. A host that
//! forwards a packet unchanged between two interfaces is its sender for the ladder (the hop
//! into it is not drawn separately).
//!
//! Arrows are ordered by the time of their first observation: all namespaces share the
//! machine's clock, so this is the order in which packets were sent (or first seen).

use std::collections::HashMap;
use std::fmt;

use crate::capture::{CapturePoint, PacketType};
use crate::trace::{NameMap, PacketKey, TraceOptions, analyze};

/// The loopback interface's name in every namespace.
const LOOPBACK: &str = "lo";

/// One packet in the diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// Sending participant.
    pub from: String,
    /// Receiving participant.
    pub to: String,
    /// Short label: TCP flags (`[S.]`), `UDP len 5`, `encap [S]`, …
    pub label: String,
}

/// A sequence diagram: participants left to right in order of appearance, arrows in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// Column names.
    pub participants: Vec<String>,
    /// Arrows, first sent first.
    pub arrows: Vec<Arrow>,
}

/// One packet seen at one or more capture points.
struct Group {
    /// (host, packet type, on loopback) of each observation.
    seen: Vec<(String, PacketType, bool)>,
    src: Option<String>,
    dst: Option<String>,
    label: String,
}

impl Ladder {
    /// Builds the diagram of `points`, named and filtered as the trace with the same options.
    pub fn build(points: &[CapturePoint], names: &NameMap, options: &TraceOptions) -> Self {
        let records = analyze(points, names, options);
        let mut observations: Vec<_> = records
            .iter()
            .enumerate()
            .flat_map(|(p, recs)| {
                recs.iter()
                    .enumerate()
                    .map(move |(i, r)| (r.timestamp, p, i, r))
            })
            .collect();
        observations.sort_by_key(|&(t, p, i, _)| (t, p, i));

        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<PacketKey, Vec<usize>> = HashMap::new();
        for (_, p, _, r) in observations {
            let host = points[p].host.clone();
            let kind = r.packet_type;
            let lo = r.interface == LOOPBACK;
            let key = r.rendered.key.clone();
            // Join the earliest group of this packet that this host has not seen the same way:
            // a retransmission with identical headers starts a group of its own.
            let existing = key.as_ref().and_then(|k| {
                by_key.get(k)?.iter().copied().find(|&g| {
                    !groups[g]
                        .seen
                        .iter()
                        .any(|o| o.0 == host && o.1 == kind && o.2 == lo)
                })
            });
            match existing {
                Some(g) => groups[g].seen.push((host, kind, lo)),
                None => {
                    if let Some(k) = &key {
                        by_key.entry(k.clone()).or_default().push(groups.len());
                    }
                    groups.push(Group {
                        seen: vec![(host, kind, lo)],
                        src: r.rendered.src.clone(),
                        dst: r.rendered.dst.clone(),
                        label: r.rendered.label.clone(),
                    });
                }
            }
        }

        let mut arrows = Vec::new();
        for g in &groups {
            // Loopback copies (a decapsulated packet written back into the stack, traffic to
            // oneself) stay inside a host: they draw an arrow only when nothing else saw it.
            let wire: Vec<&(String, PacketType, bool)> = g.seen.iter().filter(|o| !o.2).collect();
            let seen: Vec<&(String, PacketType, bool)> = if wire.is_empty() {
                g.seen.iter().collect()
            } else {
                wire
            };
            let from = seen
                .iter()
                .find(|o| o.1.is_outgoing())
                .map(|o| o.0.clone())
                .or_else(|| seen.iter().find(|o| o.2).map(|o| o.0.clone()))
                .or_else(|| g.src.clone())
                .unwrap_or_else(|| "?".into());
            let mut to: Vec<String> = Vec::new();
            for (h, t, lo) in seen {
                let received = matches!(
                    t,
                    PacketType::Host | PacketType::Broadcast | PacketType::Multicast
                );
                if (received && *h != from || *lo) && !to.contains(h) {
                    to.push(h.clone());
                }
            }
            if to.is_empty() {
                to.push(g.dst.clone().unwrap_or_else(|| "?".into()));
            }
            for to in to {
                arrows.push(Arrow {
                    from: from.clone(),
                    to,
                    label: g.label.clone(),
                });
            }
        }
        let mut participants: Vec<String> = Vec::new();
        for a in &arrows {
            for name in [&a.from, &a.to] {
                if !participants.contains(name) {
                    participants.push(name.clone());
                }
            }
        }
        Self {
            participants,
            arrows,
        }
    }

    /// The diagram as a Mermaid `sequenceDiagram`.
    pub fn mermaid(&self) -> String {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let ids: HashMap<&str, String> = self
            .participants
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.as_str(),
                    if plain(p) { p.clone() } else { format!("p{i}") },
                )
            })
            .collect();
        let mut out = String::from("sequenceDiagram\n");
        for p in &self.participants {
            let id = &ids[p.as_str()];
            if id == p {
                out += &format!("    participant {p}\n");
            } else {
                out += &format!("    participant {id} as {}\n", escape_mermaid(p));
            }
        }
        for a in &self.arrows {
            let (f, t) = (&ids[a.from.as_str()], &ids[a.to.as_str()]);
            out += &format!("    {f}->>{t}: {}\n", escape_mermaid(&a.label));
        }
        out
    }
}

/// Mermaid reads `;` as a line break and `#…;` as an entity: write both as entities.
fn escape_mermaid(s: &str) -> String {
    s.replace('#', "#35;").replace(';', "#59;")
}

impl fmt::Display for Ladder {
    /// The terminal rendering: a header of names, lifelines, one row per arrow.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.participants.len();
        if n == 0 {
            return writeln!(f, "(no packets)");
        }
        let longest_label = self
            .arrows
            .iter()
            .map(|a| a.label.chars().count())
            .max()
            .unwrap_or(0);
        let longest_name = self
            .participants
            .iter()
            .map(|p| p.chars().count())
            .max()
            .unwrap_or(0);
        let width = (longest_label + 6).max(longest_name + 2).max(12);
        let center = |i: usize| i * width + width / 2;
        let col: HashMap<&str, usize> = self
            .participants
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i))
            .collect();
        let blank = || {
            let mut row = vec![' '; n * width + longest_label + 8];
            (0..n).for_each(|i| row[center(i)] = '|');
            row
        };
        let put = |row: &mut Vec<char>, at: usize, s: &str| {
            for (k, c) in s.chars().enumerate() {
                if let Some(slot) = row.get_mut(at + k) {
                    *slot = c;
                }
            }
        };
        let mut header = vec![' '; n * width];
        for (i, p) in self.participants.iter().enumerate() {
            put(
                &mut header,
                center(i).saturating_sub(p.chars().count() / 2),
                p,
            );
        }
        write_row(f, &header)?;
        write_row(f, &blank())?;
        for a in &self.arrows {
            let mut row = blank();
            let (x, y) = (center(col[a.from.as_str()]), center(col[a.to.as_str()]));
            let label_len = a.label.chars().count();
            if x == y {
                put(&mut row, x + 1, &format!("-- {} (to self)", a.label));
            } else {
                let (l, r) = (x.min(y), x.max(y));
                (l + 1..r).for_each(|k| row[k] = '-');
                if y > x {
                    row[r - 1] = '>';
                } else {
                    row[l + 1] = '<';
                }
                let start = l + 1 + (r - l - 1).saturating_sub(label_len) / 2;
                put(&mut row, start, &a.label);
            }
            write_row(f, &row)?;
        }
        Ok(())
    }
}

fn write_row(f: &mut fmt::Formatter<'_>, row: &[char]) -> fmt::Result {
    let s: String = row.iter().collect();
    writeln!(f, "{}", s.trim_end())
}
