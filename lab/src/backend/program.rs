//! The vocabulary of the runner's boundary: what a scenario asks a network to run on a host,
//! the readiness it can wait for, and what comes back (listener counts, telnet's outcome,
//! conntrack readings). Plain data; every backend speaks it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

/// Counter name (a conntrack counter as `conntrack -S` names it, summed over CPUs; or one of
/// [`NFQUEUE_COUNTERS`]) → value.
pub type Counters = BTreeMap<String, u64>;

/// The counters of an NFQUEUE reading, from `/proc/net/netfilter/nfnetlink_queue`:
/// `packets` (the queue's id sequence: packets it has taken since it was bound), `dropped`
/// (queue full, and failures to reach the program), `waiting` (packets now without a verdict).
pub const NFQUEUE_COUNTERS: &[&str] = &["packets", "dropped", "waiting"];

/// [`NFQUEUE_COUNTERS`] from their values.
pub fn nfqueue_counters(packets: u64, dropped: u64, waiting: u64) -> Counters {
    Counters::from([
        ("packets".to_string(), packets),
        ("dropped".to_string(), dropped),
        ("waiting".to_string(), waiting),
    ])
}

/// A program started in a host that runs in the background until the network goes down (or a
/// `stop` step ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The workspace's `lb` binary with these arguments (`lb server …`, `lb agent …`).
    Lb {
        /// Arguments after `lb`.
        args: Vec<String>,
    },
    /// Any command line.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// A TCP listener that accepts connections and logs what it receives (like `nc -l`); it
    /// sends `reply` once per connection after the first data, and closes when its peer does.
    TcpListener {
        /// Address to listen on.
        addr: SocketAddrV4,
        /// Sent back once per connection.
        reply: Option<String>,
    },
    /// A UDP socket that counts the datagrams it receives.
    UdpListener {
        /// Address to bind.
        addr: SocketAddrV4,
    },
    /// An NFQUEUE holder: holds packets, then gives them one verdict together.
    NfqHolder(HoldSpec),
    /// A TCP echo server: answers every line received with `<host>: <line>`, so that a client
    /// learns which backend serves it.
    TcpEcho {
        /// Address to listen on.
        addr: SocketAddrV4,
    },
}

impl Program {
    /// True for programs that are processes (they have an exit status and take signals).
    pub fn is_process(&self) -> bool {
        matches!(self, Program::Lb { .. } | Program::Command { .. })
    }
}

/// What an NFQUEUE holder does: hold `count` packets of `queue`, wait `delay`, give `verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSpec {
    /// Queue number.
    pub queue: u16,
    /// Packets held before a verdict.
    pub count: usize,
    /// Wait after the last held packet, before the verdict.
    pub delay: Duration,
    /// The verdict.
    pub verdict: HoldVerdict,
}

/// What a program reports once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// One line for the step's detail: `started`, `listening on 10.0.0.2:8080`, …
    pub detail: String,
    /// Its log, kept as an artifact.
    pub log: Option<PathBuf>,
}

/// A telnet session from a host: connect, send lines, half-close, read until the peer closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnetSpec {
    /// Where to connect.
    pub addr: SocketAddrV4,
    /// Lines to send, each followed by `\n`.
    pub send: Vec<String>,
    /// Read a whole reply line before closing (a person reading the answer).
    pub wait_reply: bool,
    /// The tcp-listener (by name) serving this connection. When given, the lines are sent
    /// once it has accepted the connection and (with `wait_reply`) the client closes once it
    /// has seen its reply acknowledged, so every run sends the same packets in the same order.
    pub server: Option<String>,
    /// Connect timeout, and the bound of the whole exchange.
    pub timeout: Duration,
}

/// Datagrams from one socket (one 5-tuple).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BurstSpec {
    /// Destination.
    pub to: SocketAddrV4,
    /// Source port (0: the network picks one).
    pub source_port: u16,
    /// How many.
    pub count: usize,
    /// Gap between datagrams (zero: back to back).
    pub interval: Duration,
    /// Payload; `{n}` becomes the datagram's number (1-based), `{dots}` that many dots (each
    /// datagram a length of its own, so a trace shows the order they arrive in).
    pub payload: String,
}

/// Datagram `n`'s payload from a [`BurstSpec::payload`] template.
pub fn burst_payload(template: &str, n: usize) -> String {
    template
        .replace("{n}", &n.to_string())
        .replace("{dots}", &".".repeat(n))
}

/// Long-lived TCP connections from one host (`connections` step): each connects to `to`, then
/// sends a line every `interval` and checks the echo (a `tcp-echo` server's `<host>: <line>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsSpec {
    /// Where they connect.
    pub to: SocketAddrV4,
    /// How many.
    pub count: usize,
    /// Time between two lines of a connection.
    pub interval: Duration,
    /// A reply later than this (or none) makes the connection stalled.
    pub stall: Duration,
    /// Connect timeout of each connection.
    pub timeout: Duration,
}

/// The counters of a `tally` reading of a connections group: `open` (connected, not broken),
/// `failed` (never connected), `broken` (reset, closed by the peer, or answered by another
/// backend than its first), `stalled` (a reply came later than `stall`, or not yet while overdue),
/// `exchanges` (lines echoed as sent), `backends` (distinct backends that answered).
pub const CONNECTIONS_COUNTERS: &[&str] = &[
    "open",
    "failed",
    "broken",
    "stalled",
    "exchanges",
    "backends",
];

/// A command run to completion in a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// How long at most; the command is killed after that.
    pub timeout: Duration,
}

/// How a command run to completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// It ended within the timeout (otherwise it was killed).
    pub finished: bool,
    /// Its exit code; `None` if it did not finish or was killed by a signal.
    pub code: Option<i32>,
    /// How it ended, as a person reads it (`exit status: 1`, `did not finish`).
    pub ended: String,
    /// What it printed (stdout and stderr).
    pub output: String,
    /// Its output file, kept as an artifact.
    pub log: Option<PathBuf>,
}

/// A readiness check on a host, answered now (the runner polls it in the network's time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A socket listens (TCP) or is bound (UDP) on `addr` (0.0.0.0 matches any address).
    Listening {
        /// TCP or UDP.
        proto: Proto,
        /// Address.
        addr: SocketAddrV4,
    },
    /// NFQUEUE `queue` is bound.
    QueueBound {
        /// Queue number.
        queue: u16,
    },
}

/// A conntrack reading in a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackReading {
    /// Counters (`conntrack -S` names), summed over CPUs.
    pub counters: Counters,
    /// Entries matching the filter, or why they could not be listed.
    pub entries: Result<u64, String>,
    /// The listing (`conntrack -L <filter>`), for the artifact.
    pub listing: String,
}

/// Counts of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// UDP datagrams received.
    pub datagrams: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// TCP: replies (`reply`) the client has acknowledged completely.
    pub replies_acked: u64,
    /// What was received (TCP: all connections in order; UDP: every payload).
    pub received: Vec<u8>,
}

/// What a telnet session saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelnetResult {
    /// connected / refused / timeout / unreachable.
    pub outcome: TelnetOutcome,
    /// What telnet would print.
    pub message: String,
    /// Bytes read from the server.
    pub received: Vec<u8>,
    /// The server closed its side before the step's time ran out.
    pub closed_by_peer: bool,
}

/// A point where frames are captured: a host, and one interface or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Host.
    pub host: String,
    /// Interface; all of the host's when `None`.
    pub interface: Option<String>,
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An NFQUEUE verdict the holder gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldVerdict {
    /// NF_ACCEPT: the packets continue.
    Accept,
    /// NF_DROP.
    Drop,
}

impl fmt::Display for HoldVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HoldVerdict::Accept => "accept",
            HoldVerdict::Drop => "drop",
        })
    }
}

/// A signal a `stop` step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: the process cleans up.
    Term,
    /// SIGINT.
    Int,
    /// SIGKILL: nothing is cleaned up (rules stay).
    Kill,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Kill => "SIGKILL",
        })
    }
}

/// The outcome of a telnet step, as telnet reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TelnetOutcome {
    /// "Connected to …".
    Connected,
    /// "Unable to connect to remote host: Connection refused".
    Refused,
    /// "Unable to connect to remote host: Connection timed out".
    Timeout,
    /// "Unable to connect to remote host: No route to host" (or network unreachable).
    Unreachable,
}

impl TelnetOutcome {
    /// The outcome named by a word of the scenario format.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "connected" => Self::Connected,
            "refused" => Self::Refused,
            "timeout" => Self::Timeout,
            "unreachable" => Self::Unreachable,
            _ => return None,
        })
    }

    /// The word used in files and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for TelnetOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
