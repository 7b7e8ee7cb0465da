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
//! Arrows are in causal order: a packet's arrow comes after every packet that some capture
//! point saw before it, so the diagram never contradicts a trace section; the timestamps (one
//! clock for every namespace of the machine) only order packets that no point saw both of. The
//! clock alone would not do: the kernel stamps a received frame either when it was queued for
//! the host or when it reached the capture socket (see [`causal_order`]).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::capture::{CapturePoint, PacketType};
use crate::trace::{NameMap, PacketKey, Record, TraceOptions, analyze};

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
    /// Timestamp of the first observation.
    first: Duration,
    src: Option<String>,
    dst: Option<String>,
    label: String,
}

impl Ladder {
    /// Builds the diagram of `points`, named and filtered as the trace with the same options.
    pub fn build(points: &[CapturePoint], names: &NameMap, options: &TraceOptions) -> Self {
        let records = analyze(points, names, options);
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<PacketKey, Vec<usize>> = HashMap::new();
        // The groups in the order each capture point saw them, for `causal_order`.
        let mut seen_by: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
        for (p, r) in merge(&records) {
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
                Some(g) => {
                    groups[g].seen.push((host, kind, lo));
                    seen_by[p].push(g);
                }
                None => {
                    if let Some(k) = &key {
                        by_key.entry(k.clone()).or_default().push(groups.len());
                    }
                    seen_by[p].push(groups.len());
                    groups.push(Group {
                        seen: vec![(host, kind, lo)],
                        first: r.timestamp,
                        src: r.rendered.src.clone(),
                        dst: r.rendered.dst.clone(),
                        label: r.rendered.label.clone(),
                    });
                }
            }
        }

        let first: Vec<Duration> = groups.iter().map(|g| g.first).collect();
        let mut arrows = Vec::new();
        for g in causal_order(&seen_by, &first)
            .into_iter()
            .map(|g| &groups[g])
        {
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

/// Every capture point's records in one sequence that keeps each point's own order (the order
/// its kernel queued them): the next record is, among the next one of every point, the one with
/// the earliest timestamp (ties: the point given first).
///
/// Sorting all records by timestamp instead could contradict a point's own order, because
/// received frames are stamped at different moments: when they were queued for the host (most
/// frames) or when they reached the packet socket (TCP segments that carry a departure time).
fn merge(records: &[Vec<Record>]) -> Vec<(usize, &Record)> {
    let mut next = vec![0; records.len()];
    let mut out = Vec::with_capacity(records.iter().map(Vec::len).sum());
    while let Some(p) = (0..records.len())
        .filter(|&p| next[p] < records[p].len())
        .min_by_key(|&p| (records[p][next[p]].timestamp, p))
    {
        out.push((p, &records[p][next[p]]));
        next[p] += 1;
    }
    out
}

/// The order of the arrows (group indices): a packet comes after every packet that some capture
/// point saw before it, so the diagram agrees with every trace section; the clock only decides
/// between packets that no capture point saw both of (the earliest first observation first,
/// then the earlier group). When the points disagree (two packets crossing, each seen first
/// by a different point), the earliest packet at the head of a point's sequence goes first.
///
/// `seen_by[p]` lists the groups in the order point `p` saw them; `first[g]` is the timestamp
/// of group `g`'s first observation.
fn causal_order(seen_by: &[Vec<usize>], first: &[Duration]) -> Vec<usize> {
    let mut occurrences: Vec<Vec<(usize, usize)>> = vec![Vec::new(); first.len()];
    for (p, seq) in seen_by.iter().enumerate() {
        for (i, &g) in seq.iter().enumerate() {
            occurrences[g].push((p, i));
        }
    }
    let mut placed = vec![false; first.len()];
    let mut next = vec![0; seen_by.len()];
    let mut order = Vec::with_capacity(first.len());
    while order.len() < first.len() {
        // Ready: at every point that saw it, everything before it is placed (or is itself).
        let ready = |g: usize| {
            occurrences[g].iter().all(|&(p, i)| {
                seen_by[p][next[p].min(i)..i]
                    .iter()
                    .all(|&x| x == g || placed[x])
            })
        };
        let heads: Vec<usize> = seen_by
            .iter()
            .zip(&next)
            .filter_map(|(seq, &i)| seq.get(i).copied())
            .collect();
        let earliest = |g: &usize| (first[*g], *g);
        let Some(g) = heads
            .iter()
            .copied()
            .filter(|&g| ready(g))
            .min_by_key(earliest)
            .or_else(|| heads.iter().copied().min_by_key(earliest))
        else {
            break; // unreachable: every group was seen by some point
        };
        placed[g] = true;
        order.push(g);
        for (seq, i) in seen_by.iter().zip(next.iter_mut()) {
            while seq.get(*i).is_some_and(|&x| placed[x]) {
                *i += 1;
            }
        }
    }
    order
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use etherparse::PacketBuilder;

    use super::*;
    use crate::capture::Frame;

    const H1: [u8; 4] = [10, 0, 0, 1];
    const H2: [u8; 4] = [10, 0, 0, 2];
    const H3: [u8; 4] = [10, 0, 0, 3];

    fn names() -> NameMap {
        NameMap::new()
            .host("h1", Ipv4Addr::from(H1))
            .host("h2", Ipv4Addr::from(H2))
            .host("h3", Ipv4Addr::from(H3))
    }

    /// The arrows of the ladder of `points`, as (from, to).
    fn arrows(points: &[CapturePoint]) -> Vec<(String, String)> {
        Ladder::build(points, &names(), &TraceOptions::default())
            .arrows
            .into_iter()
            .map(|a| (a.from, a.to))
            .collect()
    }

    fn frame(us: u64, kind: PacketType, data: Vec<u8>) -> Frame {
        Frame::ethernet(Duration::from_micros(us), kind, "eth0", data)
    }

    fn udp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(src, dst, 64)
            .udp(5000, dport)
            .write(&mut out, b"x")
            .expect("build");
        out
    }

    #[test]
    fn arrows_keep_each_capture_points_order_when_timestamps_disagree() {
        // h3 read the datagram from h1 first, but it carries the later stamp (a frame stamped on
        // reaching the socket, behind one stamped when it was queued for the host).
        let mut p3 = CapturePoint::new("h3", Some("eth0"));
        p3.frames = vec![
            frame(20, PacketType::Host, udp(H1, H3, 1)),
            frame(10, PacketType::Host, udp(H2, H3, 2)),
        ];
        assert_eq!(
            arrows(&[p3]),
            [("h1".into(), "h3".into()), ("h2".into(), "h3".into())]
        );
    }

    #[test]
    fn an_arrow_follows_every_packet_a_capture_point_saw_before_it() {
        // The seed's race: h3 receives h1's reply (port 2) before h2's (port 3), but h2's left
        // h2 at a time stamped before h1's reached h3. h3's order wins over the clock.
        let mut p3 = CapturePoint::new("h3", Some("eth0"));
        p3.frames = vec![
            frame(0, PacketType::Outgoing, udp(H3, H2, 1)),
            frame(100, PacketType::Host, udp(H1, H3, 2)),
            frame(101, PacketType::Host, udp(H2, H3, 3)),
        ];
        let mut p2 = CapturePoint::new("h2", Some("eth0"));
        p2.frames = vec![
            frame(10, PacketType::Host, udp(H3, H2, 1)),
            frame(50, PacketType::Outgoing, udp(H2, H3, 3)),
        ];
        let pairs: Vec<(String, String)> = [("h3", "h2"), ("h1", "h3"), ("h2", "h3")]
            .map(|(a, b)| (a.into(), b.into()))
            .into();
        assert_eq!(arrows(&[p2, p3]), pairs);
    }

    #[test]
    fn crossing_packets_are_ordered_by_the_clock() {
        // h2 and h3 send to each other at once: each sees its own packet first, so the points
        // disagree; the earlier send goes first, whichever point is given first.
        let mut p2 = CapturePoint::new("h2", Some("eth0"));
        p2.frames = vec![
            frame(5, PacketType::Outgoing, udp(H2, H3, 2)),
            frame(9, PacketType::Host, udp(H3, H2, 3)),
        ];
        let mut p3 = CapturePoint::new("h3", Some("eth0"));
        p3.frames = vec![
            frame(4, PacketType::Outgoing, udp(H3, H2, 3)),
            frame(8, PacketType::Host, udp(H2, H3, 2)),
        ];
        for points in [[p2.clone(), p3.clone()], [p3, p2]] {
            let from: Vec<String> = arrows(&points).into_iter().map(|a| a.0).collect();
            assert_eq!(from, ["h3", "h2"]);
        }
    }
}
