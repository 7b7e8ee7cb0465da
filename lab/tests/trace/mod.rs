//! Trace, ladder and mermaid snapshots of hand-built frames; the seed reproduced exactly.

mod catalog;
mod seed;

use lab::assert_trace;
use lab::ladder::Ladder;
use lab::trace::{Trace, TraceOptions};
use seed::{OTHER, POST, names, post_views, seed};

fn trace_of(run: &seed::Run, options: &TraceOptions) -> Trace {
    Trace::build(&seed(run), &names(), options)
}

#[test]
fn seed_h2_and_h3_views() {
    let trace = Trace::build(&post_views(&POST), &names(), &TraceOptions::default());
    let h3 = &trace.sections[1].lines;
    let flags: Vec<&str> = h3
        .iter()
        .map(|l| {
            l.split("Flags ")
                .nth(1)
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(flags, ["[S]", "[R.]", "[S.]", "[R]"], "{trace}");
    assert_trace!("seed_h2_and_h3_views", trace);
}

#[test]
fn seed_all_capture_points() {
    assert_trace!(
        "seed_all_capture_points",
        trace_of(&POST, &TraceOptions::default())
    );
}

#[test]
fn seed_with_direction_and_tcp_options() {
    let options = TraceOptions {
        direction: true,
        tcp_options: true,
        window: true,
        ..TraceOptions::default()
    };
    assert_trace!(
        "seed_with_direction_and_tcp_options",
        trace_of(&POST, &options)
    );
}

#[test]
fn seed_ladder() {
    let ladder = Ladder::build(&seed(&POST), &names(), &TraceOptions::default());
    assert_eq!(ladder.participants, ["h3", "h1", "h2"]);
    assert_trace!("seed_ladder", ladder);
}

#[test]
fn seed_mermaid() {
    let ladder = Ladder::build(&seed(&POST), &names(), &TraceOptions::default());
    assert_trace!("seed_mermaid", ladder.mermaid());
}

#[test]
fn seed_syn_ack_is_drawn_from_h2_although_its_source_is_the_vip() {
    let ladder = Ladder::build(&seed(&POST), &names(), &TraceOptions::default());
    let syn_ack: Vec<_> = ladder.arrows.iter().filter(|a| a.label == "[S.]").collect();
    assert_eq!(syn_ack.len(), 1, "seen by h2 and h3, drawn once: {ladder}");
    assert_eq!(
        (syn_ack[0].from.as_str(), syn_ack[0].to.as_str()),
        ("h2", "h3")
    );
}

#[test]
fn ladder_falls_back_to_address_names_without_direction() {
    // Only h3 captured, and no direction known: the RST comes from "vip".
    let mut points = seed(&POST);
    points.truncate(1);
    points[0]
        .frames
        .iter_mut()
        .for_each(|f| f.packet_type = lab::capture::PacketType::Unknown);
    let ladder = Ladder::build(&points, &names(), &TraceOptions::default());
    assert_eq!(ladder.participants, ["h3", "vip"]);
    assert_trace!("ladder_without_direction", ladder);
}

#[test]
fn trace_is_identical_across_ports_isns_timestamps_and_ip_ids() {
    let options = TraceOptions::default();
    assert_eq!(
        trace_of(&POST, &options).to_string(),
        trace_of(&OTHER, &options).to_string()
    );
    let (a, b) = (
        Ladder::build(&seed(&POST), &names(), &options),
        Ladder::build(&seed(&OTHER), &names(), &options),
    );
    assert_eq!(a, b);
    assert_eq!(a.mermaid(), b.mermaid());
}
