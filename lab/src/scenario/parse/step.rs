//! Validation of steps, one method per action: the fields each action takes, the names it
//! claims or refers to, and the [`StepKind`] it becomes. A new step kind is one method here (and
//! its raw table in `raw.rs`).

use super::context::{convert, socket_addr};
use super::raw::{
    RawBurst, RawConnections, RawConntrack, RawDuration, RawExec, RawImpair, RawNfqueue, RawSleep,
    RawStart, RawStop, RawTally, RawTelnet, RawWait, STEP_ACTIONS,
};
use super::validator::{Named, Validator};
use crate::backend::{
    BurstSpec, ConnectionsSpec, ExecSpec, HoldSpec, HoldVerdict, Probe, Program, Proto, StopSignal,
    TelnetSpec,
};
use crate::scenario::model::{ScenarioError, StepKind, WaitFor};
use std::time::Duration;

/// How long a wait or an exec may take when the file does not say.
const WAIT_DEFAULT: Duration = Duration::from_secs(5);

/// A duration field, or `default` when the file leaves it out.
fn duration(d: &Option<RawDuration>, default: Duration) -> Result<Duration, String> {
    d.as_ref().map_or(Ok(default), RawDuration::get)
}

/// Rejects the first field `given` that the action `key = "value"` does not take.
fn misplaced(
    given: &[(&str, bool)],
    allowed: &[&str],
    key: &str,
    value: &str,
) -> Result<(), String> {
    match given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
        Some((field, _)) => Err(format!("`{field}` does not apply to `{key} = \"{value}\"`")),
        None => Ok(()),
    }
}

impl Validator<'_> {
    /// Validates one `[[step]]` table: which action it names, then that action's fields.
    pub(super) fn step(
        &mut self,
        index: usize,
        line: Option<usize>,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let actions: Vec<&str> = STEP_ACTIONS
            .iter()
            .copied()
            .filter(|a| t.contains_key(*a))
            .collect();
        let action = match actions.as_slice() {
            [one] => *one,
            [] => {
                return Err(self.cx.err(
                    line,
                    format!("step {index}"),
                    format!("a step starts with one of: {}", STEP_ACTIONS.join(", ")),
                ));
            }
            many => {
                return Err(self.cx.err(
                    line,
                    format!("step {index}"),
                    format!("a step does one thing; this one has {}", many.join(" and ")),
                ));
            }
        };
        let ctx = format!("step {index} ({action})");
        match action {
            "start" => self.start(index, line, &ctx, t),
            "wait" => self.wait(index, line, &ctx, t),
            "telnet" => self.telnet(index, line, &ctx, t),
            "connections" => self.connections(index, line, &ctx, t),
            "tally" => self.tally(index, line, &ctx, t),
            "udp-burst" => self.udp_burst(index, line, &ctx, t),
            "conntrack" => self.conntrack(index, line, &ctx, t),
            "nfqueue" => self.nfqueue(index, line, &ctx, t),
            "sleep" => self.sleep(index, line, &ctx, t),
            "stop" => self.stop(index, line, &ctx, t),
            "exec" => self.exec(index, line, &ctx, t),
            "impair" => self.impair(line, &ctx, t),
            _ => unreachable!("action list and match agree"),
        }
    }

    /// `start = "lb" | "command" | "tcp-listener" | "udp-listener" | "nfq-holder" | "tcp-echo"`:
    /// a program in the background.
    fn start(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawStart = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let given = [
            ("args", !r.args.is_empty()),
            ("listen", r.listen.is_some()),
            ("reply", r.reply.is_some()),
            ("queue", r.queue.is_some()),
            ("count", r.count.is_some()),
            ("delay", r.delay.is_some()),
            ("verdict", r.verdict.is_some()),
        ];
        let only = |allowed: &[&str]| misplaced(&given, allowed, "start", &r.start).map_err(&e);
        Ok(match r.start.as_str() {
            "lb" => {
                only(&["args"])?;
                if r.args.is_empty() {
                    return Err(e("`start = \"lb\"` needs `args` (e.g. [\"server\", \"--vip\", \"10.0.0.50\", ...])".into()));
                }
                let name = self.claim(
                    line,
                    ctx,
                    r.name.as_deref().unwrap_or("lb"),
                    Named::Process,
                    index,
                )?;
                StepKind::Start {
                    host,
                    name,
                    program: Program::Lb { args: r.args },
                }
            }
            "command" => {
                only(&["args"])?;
                if r.args.is_empty() {
                    return Err(e(
                        "`start = \"command\"` needs `args`: the program and its arguments".into(),
                    ));
                }
                let default = r.args[0]
                    .rsplit('/')
                    .next()
                    .unwrap_or("command")
                    .to_string();
                let name = self.claim(
                    line,
                    ctx,
                    r.name.as_deref().unwrap_or(&default),
                    Named::Process,
                    index,
                )?;
                StepKind::Start {
                    host,
                    name,
                    program: Program::Command { argv: r.args },
                }
            }
            "tcp-listener" | "udp-listener" => {
                let tcp = r.start == "tcp-listener";
                only(if tcp {
                    &["listen", "reply"]
                } else {
                    &["listen"]
                })?;
                let Some(listen) = &r.listen else {
                    return Err(e(format!(
                        "`start = \"{}\"` needs `listen = \"ADDRESS:PORT\"`",
                        r.start
                    )));
                };
                let addr = socket_addr(listen).map_err(&e)?;
                let default = if tcp { "tcp-listener" } else { "udp-listener" };
                let kind = if tcp {
                    Named::TcpListener
                } else {
                    Named::UdpListener
                };
                let name =
                    self.claim(line, ctx, r.name.as_deref().unwrap_or(default), kind, index)?;
                let program = if tcp {
                    Program::TcpListener {
                        addr,
                        reply: r.reply,
                    }
                } else {
                    Program::UdpListener { addr }
                };
                StepKind::Start {
                    host,
                    name,
                    program,
                }
            }
            "tcp-echo" => {
                only(&["listen"])?;
                let Some(listen) = &r.listen else {
                    return Err(e(
                        "`start = \"tcp-echo\"` needs `listen = \"ADDRESS:PORT\"`".into(),
                    ));
                };
                let addr = socket_addr(listen).map_err(&e)?;
                let name = self.claim(
                    line,
                    ctx,
                    r.name.as_deref().unwrap_or("tcp-echo"),
                    Named::Echo,
                    index,
                )?;
                StepKind::Start {
                    host,
                    name,
                    program: Program::TcpEcho { addr },
                }
            }
            "nfq-holder" => {
                only(&["queue", "count", "delay", "verdict"])?;
                let count = r.count.unwrap_or(1);
                if count == 0 || count > 1024 {
                    return Err(e(format!("count {count}: hold 1 to 1024 packets")));
                }
                let verdict = match r.verdict.as_deref() {
                    None | Some("accept") => HoldVerdict::Accept,
                    Some("drop") => HoldVerdict::Drop,
                    Some(v) => {
                        return Err(e(format!("unknown verdict `{v}` (accept | drop)")));
                    }
                };
                let name = self.claim(
                    line,
                    ctx,
                    r.name.as_deref().unwrap_or("nfq-holder"),
                    Named::Holder,
                    index,
                )?;
                StepKind::Start {
                    host,
                    name,
                    program: Program::NfqHolder(HoldSpec {
                        queue: r.queue.unwrap_or(0),
                        count,
                        delay: duration(&r.delay, Duration::ZERO).map_err(&e)?,
                        verdict,
                    }),
                }
            }
            other => {
                return Err(e(format!(
                    "unknown `start = \"{other}\"` (lb | tcp-listener | udp-listener | tcp-echo | nfq-holder | command)"
                )));
            }
        })
    }

    /// `wait = "log" | "listening" | "queue" | "datagrams"`: readiness, with a timeout.
    fn wait(
        &mut self,
        _index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawWait = convert(t).map_err(&e)?;
        let timeout = duration(&r.timeout, WAIT_DEFAULT).map_err(&e)?;
        let given = [
            ("host", r.host.is_some()),
            ("process", r.process.is_some()),
            ("line", r.line.is_some()),
            ("tcp", r.tcp.is_some()),
            ("udp", r.udp.is_some()),
            ("queue", r.queue.is_some()),
            ("listener", r.listener.is_some()),
            ("count", r.count.is_some()),
        ];
        let only = |allowed: &[&str]| misplaced(&given, allowed, "wait", &r.wait).map_err(&e);
        let until = match r.wait.as_str() {
            "log" => {
                only(&["process", "line"])?;
                let (Some(process), Some(text)) = (r.process, r.line) else {
                    return Err(e("`wait = \"log\"` needs `process` and `line`".into()));
                };
                self.refer(line, ctx, &process, &[Named::Process])?;
                WaitFor::Log { process, text }
            }
            "listening" => {
                only(&["host", "tcp", "udp"])?;
                let Some(h) = &r.host else {
                    return Err(e("`wait = \"listening\"` needs `host`".into()));
                };
                let host = self.host(line, ctx, h)?;
                let (proto, a) =
                    match (&r.tcp, &r.udp) {
                        (Some(a), None) => (Proto::Tcp, a),
                        (None, Some(a)) => (Proto::Udp, a),
                        _ => return Err(e(
                            "give exactly one of `tcp = \"ADDR:PORT\"` or `udp = \"ADDR:PORT\"`"
                                .into(),
                        )),
                    };
                WaitFor::Probe {
                    host,
                    probe: Probe::Listening {
                        proto,
                        addr: socket_addr(a).map_err(&e)?,
                    },
                }
            }
            "queue" => {
                only(&["host", "queue"])?;
                let (Some(h), Some(queue)) = (&r.host, r.queue) else {
                    return Err(e("`wait = \"queue\"` needs `host` and `queue`".into()));
                };
                WaitFor::Probe {
                    host: self.host(line, ctx, h)?,
                    probe: Probe::QueueBound { queue },
                }
            }
            "datagrams" => {
                only(&["listener", "count"])?;
                let (Some(listener), Some(count)) = (r.listener, r.count) else {
                    return Err(e(
                        "`wait = \"datagrams\"` needs `listener` and `count`".into()
                    ));
                };
                self.refer(line, ctx, &listener, &[Named::UdpListener])?;
                WaitFor::Datagrams { listener, count }
            }
            other => {
                return Err(e(format!(
                    "unknown `wait = \"{other}\"` (log | listening | queue | datagrams)"
                )));
            }
        };
        Ok(StepKind::Wait { until, timeout })
    }

    /// `telnet = "ADDR:PORT"`: a telnet session, optionally paced by a tcp-listener.
    fn telnet(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawTelnet = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let addr = socket_addr(&r.telnet).map_err(&e)?;
        if let Some(l) = &r.server {
            self.refer(line, ctx, l, &[Named::TcpListener])?;
        }
        let name = self.claim(
            line,
            ctx,
            r.name.as_deref().unwrap_or("telnet"),
            Named::Telnet,
            index,
        )?;
        Ok(StepKind::Telnet {
            host,
            name,
            spec: TelnetSpec {
                addr,
                send: r.send,
                server: r.server,
                wait_reply: r.wait_reply.unwrap_or(false),
                timeout: duration(&r.timeout, Duration::from_secs(2)).map_err(&e)?,
            },
        })
    }

    /// `connections = "NAME"`: long-lived connections exchanging lines with an echo server.
    fn connections(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawConnections = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let to = socket_addr(&r.to).map_err(&e)?;
        let count = r.count.unwrap_or(1);
        if count == 0 || count > 1000 {
            return Err(e(format!("count {count}: open 1 to 1000 connections")));
        }
        let interval = duration(&r.interval, Duration::from_millis(100)).map_err(&e)?;
        if interval < Duration::from_millis(10) {
            return Err(e(format!(
                "interval {} ms: at least 10 ms between two lines of a connection",
                interval.as_millis()
            )));
        }
        let stall = duration(&r.stall, Duration::from_secs(1)).map_err(&e)?;
        let name = self.claim(line, ctx, &r.connections, Named::Connections, index)?;
        Ok(StepKind::Connections {
            host,
            name,
            spec: ConnectionsSpec {
                to,
                count,
                interval,
                stall,
                timeout: duration(&r.timeout, Duration::from_secs(2)).map_err(&e)?,
            },
        })
    }

    /// `tally = "READING"` with `of = "GROUP"`: a reading of a connections group's counters.
    fn tally(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawTally = convert(t).map_err(&e)?;
        self.refer(line, ctx, &r.of, &[Named::Connections])?;
        let name = self.claim(line, ctx, &r.tally, Named::Tally, index)?;
        Ok(StepKind::Tally { name, group: r.of })
    }

    /// `udp-burst = "ADDR:PORT"`: datagrams from one socket.
    fn udp_burst(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawBurst = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let to = socket_addr(&r.udp_burst).map_err(&e)?;
        let count = r.count.unwrap_or(1);
        if count == 0 || count > 10_000 {
            return Err(e(format!("count {count}: send 1 to 10000 datagrams")));
        }
        let name = self.claim(
            line,
            ctx,
            r.name.as_deref().unwrap_or("udp-burst"),
            Named::Burst,
            index,
        )?;
        Ok(StepKind::UdpBurst {
            host,
            name,
            spec: BurstSpec {
                to,
                source_port: r.source_port.unwrap_or(0),
                count,
                interval: duration(&r.interval, Duration::ZERO).map_err(&e)?,
                payload: r.payload.unwrap_or_else(|| "datagram {n}\n".into()),
            },
        })
    }

    /// `conntrack = "NAME"`: a conntrack reading.
    fn conntrack(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawConntrack = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let name = self.claim(line, ctx, &r.conntrack, Named::Conntrack, index)?;
        Ok(StepKind::Conntrack {
            host,
            name,
            filter: r.filter,
        })
    }

    /// `nfqueue = "NAME"`: a reading of an NFQUEUE's counters.
    fn nfqueue(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawNfqueue = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        let name = self.claim(line, ctx, &r.nfqueue, Named::Nfqueue, index)?;
        Ok(StepKind::Nfqueue {
            host,
            name,
            queue: r.queue,
        })
    }

    /// `sleep = DURATION` with `why`: time itself is the subject.
    fn sleep(
        &mut self,
        _index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawSleep = convert(t).map_err(&e)?;
        let Some(why) = r.why.filter(|w| !w.trim().is_empty()) else {
            return Err(e(
                "a sleep needs `why = \"...\"`: sleep only where time itself is the subject; wait for readiness with a `wait` step".into(),
            ));
        };
        Ok(StepKind::Sleep {
            duration: r.sleep.get().map_err(&e)?,
            why,
        })
    }

    /// `stop = "PROCESS"`: a signal, then wait for the end.
    fn stop(
        &mut self,
        _index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawStop = convert(t).map_err(&e)?;
        self.refer(line, ctx, &r.stop, &[Named::Process])?;
        let signal = match r.signal.as_deref() {
            None | Some("TERM") | Some("SIGTERM") => StopSignal::Term,
            Some("INT") | Some("SIGINT") => StopSignal::Int,
            Some("KILL") | Some("SIGKILL") => StopSignal::Kill,
            Some(s) => return Err(e(format!("unknown signal `{s}` (TERM | INT | KILL)"))),
        };
        Ok(StepKind::Stop {
            process: r.stop,
            signal,
        })
    }

    /// `exec = [ARGV…]`: a command to completion, with the exit status required.
    fn exec(
        &mut self,
        index: usize,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawExec = convert(t).map_err(&e)?;
        let host = self.host(line, ctx, &r.host)?;
        if r.exec.is_empty() {
            return Err(e("`exec` needs the program and its arguments".into()));
        }
        let default = format!("exec{index}");
        let name = self.claim(
            line,
            ctx,
            r.name.as_deref().unwrap_or(&default),
            Named::Exec,
            index,
        )?;
        Ok(StepKind::Exec {
            host,
            name,
            spec: ExecSpec {
                argv: r.exec,
                timeout: duration(&r.timeout, WAIT_DEFAULT).map_err(&e)?,
            },
            status: r.status.unwrap_or(0),
        })
    }

    /// `impair = "HOST:IF"` with `egress = {…}`, `ingress = {…}` or `both = {…}`: the link's
    /// new impairments in those ways (`{}` clears), as `lab impair` sets them.
    fn impair(
        &mut self,
        line: Option<usize>,
        ctx: &str,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        let r: RawImpair = convert(t).map_err(&e)?;
        let (link, out) = crate::impair::rules::link_end(self.plan, &r.impair).map_err(&e)?;
        let back = crate::impair::rules::opposite(out);
        let parse = |key: &str, t: &toml::Table| {
            crate::impair::one_way(t, &format!("{key}.")).map_err(|err| e(err.to_string()))
        };
        let mut ways = Vec::new();
        match (&r.egress, &r.ingress, &r.both) {
            (None, None, None) => {
                return Err(e(
                    "say what changes: egress = {…}, ingress = {…} or both = {…} ({} clears)"
                        .into(),
                ));
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(e("`both` stands alone: egress and ingress are in it".into()));
            }
            (_, _, Some(both)) => {
                let p = parse("both", both)?;
                ways.push((out, p.clone()));
                ways.push((back, p));
            }
            (egress, ingress, None) => {
                if let Some(t) = egress {
                    ways.push((out, parse("egress", t)?));
                }
                if let Some(t) = ingress {
                    ways.push((back, parse("ingress", t)?));
                }
            }
        }
        Ok(StepKind::Impair {
            end: r.impair,
            link,
            ways,
        })
    }
}
