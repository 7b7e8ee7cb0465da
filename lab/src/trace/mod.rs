//! Normalized traces: captured frames as tcpdump-like lines that are identical on every run
//! and machine, one section per capture point.
//!
//! ```text
//! --- h2 (h2-eth0) ---
//! h3.p1 > vip.8080: Flags [S], seq 0, length 0
//! vip.8080 > h3.p1: Flags [S.], seq 0, ack 1, length 0
//! ```
//!
//! Addresses become topology names ([`NameMap`]), ephemeral ports (≥ 32768 and not a declared
//! service port) become `pN` per address in order of appearance, TCP numbers become relative
//! to each direction's SYN, timestamps, windows and option values are left out. The full rules,
//! and why packets stay in captured order, are in docs/trace-format.md.
//!
//! [`Trace::build`] formats finished captures; [`TraceBuilder`] formats frames one at a time
//! as they arrive (`lab capture`), with the same code.

mod decode;
mod names;
mod normalize;
mod options;

use std::fmt;
use std::time::Duration;

use crate::capture::{CapturePoint, Frame, PacketType};
use decode::{L4, Packet, decode_frame};
pub(crate) use normalize::PacketKey;
use normalize::{Normalizer, Rendered};

pub use names::NameMap;
pub use normalize::EPHEMERAL_PORTS_START;
pub use options::{ENCAP_PORT, Ordering, TraceOptions};

/// The normalized view of one capture point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `host (interface)`, or `host (any)`.
    pub title: String,
    /// One line per shown frame.
    pub lines: Vec<String>,
    /// Frames left out by the protocol filters (not rendered: their number varies).
    pub filtered: usize,
}

/// A normalized trace: one section per capture point, in capture order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The sections.
    pub sections: Vec<Section>,
}

impl Trace {
    /// Builds the trace of `points` (in the order given) with `names`.
    pub fn build(points: &[CapturePoint], names: &NameMap, options: &TraceOptions) -> Self {
        let records = analyze(points, names, options);
        let sections = points
            .iter()
            .zip(records)
            .map(|(point, recs)| Section {
                title: point.label(),
                filtered: point.frames.len() - recs.len(),
                lines: {
                    let width = recs.iter().map(|r| r.interface.len()).max().unwrap_or(0);
                    recs.iter()
                        .map(|r| line(point.interface.is_none(), r, options, width))
                        .collect()
                },
            })
            .collect();
        Self { sections }
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "--- {} ---", s.title)?;
            if s.lines.is_empty() {
                writeln!(f, "(no packets)")?;
            }
            for l in &s.lines {
                writeln!(f, "{l}")?;
            }
        }
        Ok(())
    }
}

/// The text of a record: the normalized line, with `In`/`Out` (and, for a capture point on
/// every interface, the interface padded to `width`) when `options.direction` asks for it.
fn line(any_interface: bool, r: &Record, options: &TraceOptions, width: usize) -> String {
    if !options.direction {
        return r.rendered.line.clone();
    }
    let dir = match r.packet_type {
        PacketType::Outgoing => "Out",
        PacketType::Unknown => "?  ",
        _ => "In ",
    };
    if any_interface {
        format!("{:width$} {dir} {}", r.interface, r.rendered.line)
    } else {
        format!("{dir} {}", r.rendered.line)
    }
}

/// Formats frames one at a time, as they arrive: the live view of a capture (`lab capture`).
///
/// It is the same decoder, filter, normalizer and line format as [`Trace::build`], used in one
/// pass: each frame is numbered with what the builder has seen so far, where `Trace::build`
/// looks at the whole capture first. The lines are the same except for TCP numbers that a
/// later packet would change (a reused 4-tuple whose new SYN has a lower ISN), and
/// [`Ordering::SortArrivals`] does not apply (lines come in captured order).
pub struct TraceBuilder<'a> {
    options: &'a TraceOptions,
    norm: Normalizer<'a>,
    any_interface: bool,
    width: usize,
    shown: usize,
    filtered: usize,
}

impl<'a> TraceBuilder<'a> {
    /// A builder for one capture point; `any_interface` when it captures every interface
    /// (lines with `direction` then name the interface).
    pub fn new(names: &'a NameMap, options: &'a TraceOptions, any_interface: bool) -> Self {
        Self {
            options,
            norm: Normalizer::new(names, options),
            any_interface,
            width: 0,
            shown: 0,
            filtered: 0,
        }
    }

    /// The line of `frame`, or `None` when the protocol filters leave it out.
    pub fn push(&mut self, frame: &Frame) -> Option<String> {
        let Some(packet) = decode_shown(frame, self.options) else {
            self.filtered += 1;
            return None;
        };
        self.norm.observe(&packet);
        let r = record(&mut self.norm, frame, &packet);
        // Live, the longest interface name is not known in advance: pad to the longest so far.
        self.width = self.width.max(r.interface.len());
        self.shown += 1;
        Some(line(self.any_interface, &r, self.options, self.width))
    }

    /// Frames shown so far.
    pub fn shown(&self) -> usize {
        self.shown
    }

    /// Frames the protocol filters left out so far.
    pub fn filtered(&self) -> usize {
        self.filtered
    }
}

/// One shown frame, normalized; the ladder builds on these.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub timestamp: Duration,
    pub packet_type: PacketType,
    pub interface: String,
    pub rendered: Rendered,
}

/// Decodes, filters, orders and normalizes every frame; one vector per capture point.
pub(crate) fn analyze(
    points: &[CapturePoint],
    names: &NameMap,
    options: &TraceOptions,
) -> Vec<Vec<Record>> {
    let mut decoded: Vec<Vec<(usize, Packet)>> = points
        .iter()
        .map(|p| {
            p.frames
                .iter()
                .enumerate()
                .filter_map(|(i, f)| Some((i, decode_shown(f, options)?)))
                .collect()
        })
        .collect();
    let mut records = normalize(points, &decoded, names, options);
    if options.ordering == Ordering::SortArrivals {
        for (section, recs) in decoded.iter_mut().zip(&records) {
            let mut order: Vec<usize> = (0..section.len()).collect();
            let mut start = 0;
            for end in 0..=order.len() {
                if end == order.len() || recs[end].packet_type.is_outgoing() {
                    order[start..end]
                        .sort_by(|&a, &b| recs[a].rendered.line.cmp(&recs[b].rendered.line));
                    start = end + 1;
                }
            }
            let mut old = std::mem::take(section)
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>();
            *section = order.iter().filter_map(|&i| old[i].take()).collect();
        }
        // Aliases are handed out in order of appearance: hand them out again in the new order.
        records = normalize(points, &decoded, names, options);
    }
    records
}

fn normalize(
    points: &[CapturePoint],
    decoded: &[Vec<(usize, Packet)>],
    names: &NameMap,
    options: &TraceOptions,
) -> Vec<Vec<Record>> {
    let mut norm = Normalizer::new(names, options);
    decoded.iter().flatten().for_each(|(_, p)| norm.observe(p));
    points
        .iter()
        .zip(decoded)
        .map(|(point, section)| {
            section
                .iter()
                .map(|(i, packet)| record(&mut norm, &point.frames[*i], packet))
                .collect()
        })
        .collect()
}

/// Decodes `frame`; `None` when the protocol filter leaves it out.
fn decode_shown(frame: &Frame, options: &TraceOptions) -> Option<Packet> {
    let packet = decode_frame(frame, &options.encap_ports);
    shown(&packet, frame.protocol, options).then_some(packet)
}

/// The normalized record of a decoded frame (the normalizer has observed it already).
fn record(norm: &mut Normalizer<'_>, frame: &Frame, packet: &Packet) -> Record {
    Record {
        timestamp: frame.timestamp,
        packet_type: frame.packet_type,
        interface: frame.interface.clone(),
        rendered: norm.render(packet),
    }
}

/// The protocol filter. Malformed frames are shown unless their EtherType is filtered.
fn shown(packet: &Packet, ethertype: u16, options: &TraceOptions) -> bool {
    const ARP: u16 = 0x0806;
    const IPV6: u16 = 0x86dd;
    match packet {
        Packet::Ip(ip) if matches!(ip.l4, L4::Igmp(_)) => options.igmp,
        Packet::Ip(ip) => ip.src.is_ipv4() || options.ipv6,
        Packet::Arp { .. } => options.arp,
        Packet::OtherEther { .. } => options.other_ethertypes,
        Packet::Malformed { .. } => match ethertype {
            ARP => options.arp,
            IPV6 => options.ipv6,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests;
