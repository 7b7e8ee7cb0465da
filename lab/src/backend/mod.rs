//! The `backend` module is the scenario runner's boundary: what a network must offer a
//! scenario, whoever builds it.
//!
//! A [`Backend`] builds a [`Network`] from a resolved [`Plan`]; the runner
//! ([`crate::scenario::run`]) drives every step through the [`Network`] trait and nothing else:
//! programs on hosts ([`Program`]), exchanges run to completion (telnet, UDP bursts, commands),
//! readiness [`Probe`]s, conntrack readings, capture points yielding timestamped frames, and the
//! network's own clock. Step semantics, waits, expectations, traces and reports stay in the
//! runner, so a second way to build the network (Mininet) or a network with no kernel at all
//! (the simulator) implements this trait and reuses all of it.
//!
//! [`native`] is the first implementation: network namespaces, veth and bridges on the running
//! kernel ([`crate::Lab`]).

pub mod native;
pub mod program;
pub mod sim;

pub use program::{
    BurstSpec, CONNECTIONS_COUNTERS, CaptureSpec, ConnectionsSpec, ConntrackReading, Counters,
    ExecResult, ExecSpec, HoldSpec, HoldVerdict, ListenerStats, NFQUEUE_COUNTERS, Probe, Program,
    Proto, Started, StopSignal, TelnetOutcome, TelnetResult, TelnetSpec, nfqueue_counters,
};

use crate::capture::CapturePoint;
use crate::kernel::KernelVersion;
use crate::resolve::Plan;
use std::path::Path;
use std::time::Duration;

/// A way to build networks: the native namespaces, Mininet, the simulator.
pub trait Backend: Sync {
    /// Its name: `native` (the simulator and Mininet will be the next ones).
    fn name(&self) -> &'static str;

    /// The kernel whose behaviour its networks show (the running one, or a modelled one).
    fn kernel(&self) -> KernelVersion;

    /// Builds a fresh network from `plan`, named after `hint` (a scenario's name), ready for
    /// traffic: every link up. Nothing is left behind when it fails.
    fn build(&self, plan: &Plan, hint: &str) -> Result<Box<dyn Network>, String>;
}

/// A network built from a plan, as a scenario uses it. Hosts and programs are named as in the
/// scenario file; every method answers for the network's own clock ([`Network::now`]).
///
/// Errors are one line that names the host or program and what went wrong.
pub trait Network {
    /// The network's name (a lab name for the native backend).
    fn name(&self) -> &str;

    /// Where logs, pcaps and traces of this network go.
    fn artifact_dir(&self) -> &Path;

    /// Time since the network was built, on its clock (wall time, or virtual time).
    fn now(&self) -> Duration;

    /// Lets `d` of the network's time pass. Returns false if the run was cancelled meanwhile.
    fn sleep(&mut self, d: Duration) -> bool;

    /// Arms capture points: once this returns, every frame sent or received at each point is
    /// recorded, with its timestamp.
    fn arm_captures(&mut self, points: &[CaptureSpec]) -> Result<(), String>;

    /// How long every armed capture point has seen no frame (since arming if none came).
    fn captures_quiet(&self) -> Duration;

    /// Stops the capture points and returns what each recorded, in arming order.
    fn collect_captures(&mut self) -> Result<Vec<CapturePoint>, String>;

    /// Starts `program` in `host` under `name` (unique in the scenario); it runs until the
    /// network goes down or [`Network::signal`] ends it. Listeners and holders are ready (bound)
    /// when this returns; processes may still be starting.
    fn start(&mut self, host: &str, name: &str, program: &Program) -> Result<Started, String>;

    /// Answers a readiness probe in `host` now.
    fn probe(&mut self, host: &str, probe: &Probe) -> Result<bool, String>;

    /// What process `name` has printed so far.
    fn output(&self, name: &str) -> Result<String, String>;

    /// How process `name` ended (`exit status: 0`, `signal: 9 (SIGKILL)`), or `None` while it
    /// runs.
    fn exit_status(&mut self, name: &str) -> Option<String>;

    /// Sends `signal` to process `name` and everything it started; does not wait.
    fn signal(&mut self, name: &str, signal: StopSignal) -> Result<(), String>;

    /// The counts of listener `name` so far.
    fn listener(&self, name: &str) -> Result<ListenerStats, String>;

    /// Runs a telnet session from `host` to completion (see [`TelnetSpec`] for its pacing).
    fn telnet(&mut self, host: &str, spec: &TelnetSpec) -> Result<TelnetResult, String>;

    /// Sends a burst of datagrams from one socket in `host`; returns how many were sent.
    fn udp_burst(&mut self, host: &str, spec: &BurstSpec) -> Result<usize, String>;

    /// Runs a command in `host` to completion (or its timeout); `name` names its output file.
    fn exec(&mut self, host: &str, name: &str, spec: &ExecSpec) -> Result<ExecResult, String>;

    /// Reads conntrack counters in `host`, and lists the entries `conntrack -L filter` selects.
    fn conntrack(&mut self, host: &str, filter: &[String]) -> Result<ConntrackReading, String>;

    /// Reads the counters of NFQUEUE `queue` in `host` ([`NFQUEUE_COUNTERS`]); an error when
    /// no program is bound to it.
    fn nfqueue(&mut self, host: &str, queue: u16) -> Result<Counters, String>;

    /// Opens `spec.count` long-lived connections from `host` as group `name`, each then
    /// exchanging a line every `spec.interval` in the background until the network goes down;
    /// returns once each has connected or failed to, with a one-line detail and its log.
    fn connections(
        &mut self,
        host: &str,
        name: &str,
        spec: &ConnectionsSpec,
    ) -> Result<Started, String>;

    /// The counters of connections group `name` now ([`CONNECTIONS_COUNTERS`]).
    fn tally(&mut self, name: &str) -> Result<Counters, String>;

    /// Gives link `link` the impairment `imp` in the way `way` (`Forward`: the plan's a→b).
    fn impair(
        &mut self,
        link: usize,
        way: crate::impair::Way,
        imp: &crate::impair::Impairment,
    ) -> Result<(), String>;

    /// Stops every program and removes the network.
    fn down(self: Box<Self>) -> Result<(), String>;
}
