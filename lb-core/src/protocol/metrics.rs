//! `lb ctl metrics` and `/metrics`: a server's counters in the Prometheus text exposition format
//! (version 0.0.4), rendered from the `state` and `backends` answers and the kernel's queue
//! counters, so that operators of several balancers can aggregate them.
//!
//! Every family has its `# HELP` and `# TYPE`; counters end in `_total`. Label values are
//! escaped (`\\`, `\"`, `\n`). The backend status is a state set: one series per status, 1 for
//! the backend's current one. The list of families is in docs/lb.md.

use crate::protocol::ctl::{BackendRow, Backends, Health, ServerState};
use crate::registry::Status;
use std::fmt::Write;

/// One NFQUEUE's kernel counters (`/proc/net/netfilter/nfnetlink_queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// The queue number.
    pub queue: u16,
    /// Packets waiting for a verdict now.
    pub waiting: u64,
    /// Packets dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets dropped because the balancer's socket buffer was full.
    pub user_dropped: u64,
}

/// Every status a backend can have, in the order the state set lists them.
const STATUSES: [Status; 5] = [
    Status::Active,
    Status::Paused,
    Status::Draining,
    Status::Drained,
    Status::Down,
];

/// The exposition text.
pub fn exposition(state: &ServerState, backends: &Backends, queues: &[QueueCounters]) -> String {
    let mut m = Families::default();
    let vip = state.vip.to_string();
    m.gauge("lb_info", "The balancer: its VIP and data path.")
        .sample(&[("vip", &vip), ("data_path", &state.data_path)], 1.0);
    if let Some(f) = &state.table_fingerprint {
        m.gauge(
            "lb_table_fingerprint_info",
            "The Maglev table's fingerprint: the same on balancers that agree.",
        )
        .sample(&[("fingerprint", f)], 1.0);
    }
    m.gauge("lb_uptime_seconds", "Seconds since the server started.")
        .sample(&[], state.uptime_s);
    let totals: [(&str, &str, u64); 5] = [
        (
            "lb_received_packets_total",
            "Packets taken from the intake.",
            state.received,
        ),
        (
            "lb_sent_packets_total",
            "Packets sent to backends.",
            state.sent,
        ),
        (
            "lb_send_failed_total",
            "Sends the kernel refused.",
            state.send_failed,
        ),
        (
            "lb_flows_moved_total",
            "Tracked flows moved off removed or down backends.",
            state.flows_moved,
        ),
        (
            "lb_previous_table_total",
            "Untracked mid-connection packets sent by the table before a recent backend change.",
            state.previous_table,
        ),
    ];
    for (name, help, v) in totals {
        m.counter(name, help).sample(&[], v as f64);
    }
    m.gauge("lb_tracked_flows", "Flows in the connection tables now.")
        .sample(&[], state.tracked_flows as f64);
    let drops = m.counter("lb_dropped_packets_total", "Packets dropped, by reason.");
    for (reason, n) in &state.drops {
        drops.sample(&[("reason", reason)], *n as f64);
    }
    if !queues.is_empty() {
        let d = m.counter(
            "lb_queue_dropped_packets_total",
            "Packets the kernel dropped at an NFQUEUE: the queue full, or the balancer's socket buffer full.",
        );
        for q in queues {
            let n = q.queue.to_string();
            d.sample(
                &[("queue", &n), ("cause", "queue_full")],
                q.queue_dropped as f64,
            );
            d.sample(
                &[("queue", &n), ("cause", "socket_full")],
                q.user_dropped as f64,
            );
        }
        let w = m.gauge(
            "lb_queue_waiting_packets",
            "Packets waiting in an NFQUEUE for a verdict.",
        );
        for q in queues {
            w.sample(&[("queue", &q.queue.to_string())], q.waiting as f64);
        }
    }
    m.gauge("lb_backends", "Backends known, static and registered.")
        .sample(&[], state.backends as f64);
    m.gauge("lb_registered_backends", "Backends registered by agents.")
        .sample(&[], state.registered as f64);
    let c = &state.control_counters;
    let control: [(&str, &str, u64); 3] = [
        (
            "lb_control_connections_total",
            "Connections accepted on the control port.",
            c.accepted,
        ),
        (
            "lb_registrations_total",
            "Agent registrations accepted.",
            c.registrations,
        ),
        (
            "lb_deregistrations_total",
            "Agent deregistrations (asked for, or the connection lost).",
            c.deregistrations,
        ),
    ];
    for (name, help, v) in control {
        m.counter(name, help).sample(&[], v as f64);
    }
    let refused = m.counter(
        "lb_control_refused_total",
        "Control connections refused or cut, by reason.",
    );
    for (reason, v) in [
        ("busy", c.refused_busy),
        ("evicted", c.evicted),
        ("invalid", c.invalid),
        ("handshake_timeout", c.handshake_timeouts),
        ("auth_failure", c.auth_failures),
        ("read_timeout", c.read_timeouts),
    ] {
        refused.sample(&[("reason", reason)], v as f64);
    }
    if let Some(f) = &state.fast_path {
        m.gauge(
            "lb_fast_path_flows",
            "Flows the kernel forwards from the balancer's flow map now.",
        )
        .sample(&[], f.flows as f64);
        for (name, help, v) in [
            (
                "lb_fast_path_added_total",
                "Flows handed to the kernel.",
                f.added,
            ),
            (
                "lb_fast_path_removed_total",
                "Flows taken back from the kernel.",
                f.removed,
            ),
            (
                "lb_fast_path_kernel_packets_total",
                "Packets the kernel forwarded from the flow map.",
                f.kernel_packets,
            ),
            (
                "lb_fast_path_refused_total",
                "Batches of map changes the kernel refused.",
                f.refused,
            ),
        ] {
            m.counter(name, help).sample(&[], v as f64);
        }
    }
    backend_families(&mut m, backends);
    m.text()
}

fn backend_families(m: &mut Families, backends: &Backends) {
    /// A family per backend: name, help, counter (or gauge), the value.
    type PerBackend = (&'static str, &'static str, bool, fn(&BackendRow) -> f64);
    let per: [PerBackend; 5] = [
        (
            "lb_backend_packets_total",
            "Packets forwarded to a backend.",
            true,
            |b| b.packets as f64,
        ),
        (
            "lb_backend_bytes_total",
            "IP bytes forwarded to a backend.",
            true,
            |b| b.bytes as f64,
        ),
        (
            "lb_backend_flows_total",
            "New flows assigned to a backend.",
            true,
            |b| b.flows as f64,
        ),
        (
            "lb_backend_tracked_flows",
            "Flows tracked to a backend now.",
            false,
            |b| b.tracked as f64,
        ),
        (
            "lb_backend_weight",
            "A backend's Maglev weight.",
            false,
            |b| f64::from(b.weight),
        ),
    ];
    for (name, help, counter, value) in per {
        let f = if counter {
            m.counter(name, help)
        } else {
            m.gauge(name, help)
        };
        for b in &backends.backends {
            let addr = b.addr.to_string();
            f.sample(&[("backend", &b.name), ("addr", &addr)], value(b));
        }
    }
    let status = m.gauge(
        "lb_backend_status",
        "A backend's status: 1 for the one it has (active, paused, draining, drained, down).",
    );
    for b in &backends.backends {
        for s in STATUSES {
            status.sample(
                &[("backend", &b.name), ("status", s.name())],
                if b.status == s { 1.0 } else { 0.0 },
            );
        }
    }
    let checked: Vec<_> = backends
        .backends
        .iter()
        .filter(|b| b.health != Health::Unchecked)
        .collect();
    if !checked.is_empty() {
        let h = m.gauge(
            "lb_backend_healthy",
            "1 while a backend's active checks pass (only with active checks).",
        );
        for b in &checked {
            h.sample(
                &[("backend", &b.name)],
                if b.health == Health::Up { 1.0 } else { 0.0 },
            );
        }
        let c = m.counter(
            "lb_backend_checks_total",
            "Active checks done of a backend.",
        );
        for b in &checked {
            c.sample(&[("backend", &b.name)], b.checks as f64);
        }
    }
}

/// Metric families in the order they were first named.
#[derive(Default)]
struct Families {
    families: Vec<Family>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Families {
    fn counter(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, help, "counter")
    }

    fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, help, "gauge")
    }

    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
    ) -> &mut Family {
        self.families.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        self.families.last_mut().expect("just pushed")
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for f in self.families.iter().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for s in &f.samples {
                out.push_str(s);
            }
        }
        out
    }
}

impl Family {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut line = self.name.to_string();
        if !labels.is_empty() {
            line.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"{}\"", escape(v));
            }
            line.push('}');
        }
        let _ = writeln!(line, " {value}");
        self.samples.push(line);
        self
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn an_empty_family_is_left_out() {
        let mut m = Families::default();
        m.counter("lb_x_total", "x");
        m.gauge("lb_y", "y").sample(&[("a", "1")], 2.5);
        assert_eq!(
            m.text(),
            "# HELP lb_y y\n# TYPE lb_y gauge\nlb_y{a=\"1\"} 2.5\n"
        );
    }
}
