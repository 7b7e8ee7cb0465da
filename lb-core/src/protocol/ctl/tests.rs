//! The `lb ctl` messages' wire shapes, pinned.

use super::*;

fn req(line: &str) -> Result<Request, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

#[test]
fn parse() {
    assert_eq!(req(r#"{"cmd":"state"}"#), Ok(Request::State));
    assert_eq!(
        req(r#"{"cmd":"drain","name":"h2","deadline":"30s"}"#),
        Ok(Request::Drain {
            name: "h2".into(),
            deadline: Some(Duration::from_secs(30)),
        })
    );
    assert_eq!(
        req(r#"{"cmd":"undrain","name":"h2"}"#),
        Ok(Request::Undrain { name: "h2".into() })
    );
}

#[test]
fn emit_is_the_first_versions_shape() {
    let line = |r: Request| serde_json::to_string(&r).unwrap();
    assert_eq!(line(Request::Pause), r#"{"cmd":"pause"}"#);
    assert_eq!(
        line(Request::Drain {
            name: "h2".into(),
            deadline: Some(Duration::from_millis(1500)),
        }),
        r#"{"cmd":"drain","name":"h2","deadline":"1500ms"}"#
    );
    let add = Request::Add {
        backend: parse_backend_flag("b4=10.2.0.24,weight=2").unwrap(),
    };
    assert_eq!(
        line(add.clone()),
        r#"{"cmd":"add","backend":"b4=10.2.0.24,weight=2"}"#
    );
    assert_eq!(
        req(r#"{"cmd":"add"}"#).unwrap_err(),
        "add: give a backend, NAME=IP[,weight=W][,mac=MAC]"
    );
    for r in [
        Request::State,
        Request::Backends,
        Request::Metrics,
        add,
        Request::Remove { name: "b4".into() },
        Request::Undrain { name: "h3".into() },
        Request::Register,
    ] {
        assert_eq!(req(&line(r.clone())), Ok(r));
    }
}

#[test]
fn refusals_name_the_problem() {
    let wire: WireRequest = serde_json::from_str(r#"{"cmd":"nope"}"#).unwrap();
    assert_eq!(
        wire.for_role(Role::Server).unwrap_err().to_string(),
        "\"nope\" is not a server command (state, backends, metrics, add, remove, drain, undrain)"
    );
    assert!(
        req(r#"{"cmd":"nope"}"#)
            .unwrap_err()
            .contains("\"nope\" is not a command")
    );
    assert!(
        req(r#"{"cmd":"drain"}"#)
            .unwrap_err()
            .contains("drain: give a backend name")
    );
    assert!(
        req(r#"{"cmd":"drain","name":"h2","deadline":"soon"}"#)
            .unwrap_err()
            .contains("deadline: ")
    );
    assert!(req(r#"{"cmd":"state","extra":1}"#).is_err());
    assert_eq!(
        Request::Pause.refused_by(Role::Server).map(|r| r.error),
        Some(
            "\"pause\" is not a server command (state, backends, metrics, add, remove, drain, undrain)"
                .into()
        )
    );
    assert_eq!(Request::State.refused_by(Role::Agent), None);
    assert!(
        Request::Drain {
            name: "x".into(),
            deadline: None
        }
        .refused_by(Role::Agent)
        .unwrap()
        .error
        .starts_with("\"drain\" is not an agent command")
    );
}

/// `answer` serialized, then read back as `T`: the same value, and the JSON `want` (the
/// field names and shapes of the first, untyped version).
fn round_trip<T>(answer: T, want: serde_json::Value)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug + Into<Answer> + Clone,
{
    let line = serde_json::to_string(&answer).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        want
    );
    assert_eq!(serde_json::from_str::<T>(&line).unwrap(), answer);
    // As any answer, the same line.
    assert_eq!(serde_json::to_string(&answer.clone().into()).unwrap(), line);
}

#[test]
fn refusal_and_done_round_trip() {
    round_trip(
        Refusal::new("no backend h9"),
        serde_json::json!({"ok": false, "error": "no backend h9"}),
    );
    round_trip(
        Done::new("paused"),
        serde_json::json!({"ok": true, "message": "paused"}),
    );
}

fn server_state() -> ServerState {
    ServerState {
        ok: true,
        role: Role::Server,
        vip: Ipv4Addr::new(10, 0, 0, 50),
        data_path: "nfqueue 0 (batch verdicts)".into(),
        control: Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1338)),
        auth: false,
        active_checks: None,
        uptime_s: 12.5,
        backends: 2,
        registered: 1,
        pending_connections: 0,
        tracked_flows: 3,
        received: 40,
        sent: 38,
        send_failed: 0,
        flows_moved: 1,
        previous_table: 0,
        drops: BTreeMap::from([("not_vip".to_string(), 2)]),
        control_counters: ControlCounters {
            accepted: 1,
            registrations: 1,
            ..ControlCounters::default()
        },
        fast_path: None,
        table_fingerprint: Some("00c0ffee00c0ffee".into()),
    }
}

fn agent_status() -> AgentStatus {
    AgentStatus {
        ok: true,
        role: Role::Agent,
        name: "h2".into(),
        state: AgentState::Active,
        server: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1338)),
        auth: true,
        data_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        registered_for_s: Some(1.25),
        registrations: 1,
        pause_requested: false,
        last_error: None,
        received: 5,
        injected: 4,
        inject_failed: 0,
        refused: 0,
        sanity: 1,
    }
}

#[test]
fn server_state_round_trips() {
    round_trip(
        server_state(),
        serde_json::json!({
            "ok": true, "role": "server", "vip": "10.0.0.50",
            "data_path": "nfqueue 0 (batch verdicts)", "control": "0.0.0.0:1338",
            "auth": false, "active_checks": null, "uptime_s": 12.5, "backends": 2,
            "registered": 1, "pending_connections": 0, "tracked_flows": 3, "received": 40,
            "sent": 38, "send_failed": 0, "flows_moved": 1, "previous_table": 0,
            "drops": {"not_vip": 2},
            "control_counters": {
                "accepted": 1, "refused_busy": 0, "evicted": 0, "invalid": 0, "handshake_timeouts": 0,
                "auth_failures": 0, "registrations": 1, "deregistrations": 0,
                "read_timeouts": 0
            },
            "table_fingerprint": "00c0ffee00c0ffee"
        }),
    );
    let line = serde_json::to_string(&server_state()).unwrap();
    assert_eq!(
        serde_json::from_str::<StateAnswer>(&line).unwrap(),
        StateAnswer::Server(server_state())
    );
}

#[test]
fn agent_status_round_trips() {
    round_trip(
        agent_status(),
        serde_json::json!({
            "ok": true, "role": "agent", "name": "h2", "state": "Active",
            "server": "10.0.0.1:1338", "auth": true, "data_ip": "10.0.0.2",
            "registered_for_s": 1.25, "registrations": 1, "pause_requested": false,
            "last_error": null, "received": 5, "injected": 4, "inject_failed": 0,
            "refused": 0, "sanity": 1
        }),
    );
    let line = serde_json::to_string(&agent_status()).unwrap();
    assert_eq!(
        serde_json::from_str::<StateAnswer>(&line).unwrap(),
        StateAnswer::Agent(agent_status())
    );
}

#[test]
fn backends_round_trip() {
    let row = |name: &str, origin, status, health| BackendRow {
        name: name.into(),
        addr: Ipv4Addr::new(10, 0, 0, 2),
        origin,
        status,
        weight: 1,
        health,
        checks: 0,
        last_check_error: None,
        drain_remaining_s: None,
        packets: 10,
        bytes: 600,
        flows: 2,
        tracked: 1,
    };
    let mut drained = row("s1", Origin::Static, Status::Draining, Health::Down);
    drained.checks = 4;
    drained.last_check_error = Some("connect 10.0.0.2:8080: refused".into());
    drained.drain_remaining_s = Some(29.5);
    round_trip(
        Backends {
            ok: true,
            backends: vec![
                row("h2", Origin::Agent, Status::Active, Health::Unchecked),
                drained,
            ],
        },
        serde_json::json!({"ok": true, "backends": [
            {"name": "h2", "addr": "10.0.0.2", "origin": "agent", "status": "active",
             "weight": 1, "health": "unchecked", "checks": 0, "last_check_error": null,
             "drain_remaining_s": null, "packets": 10, "bytes": 600, "flows": 2,
             "tracked": 1},
            {"name": "s1", "addr": "10.0.0.2", "origin": "static", "status": "draining",
             "weight": 1, "health": "down", "checks": 4,
             "last_check_error": "connect 10.0.0.2:8080: refused",
             "drain_remaining_s": 29.5, "packets": 10, "bytes": 600, "flows": 2,
             "tracked": 1}
        ]}),
    );
    round_trip(
        Backends {
            ok: true,
            backends: vec![],
        },
        serde_json::json!({"ok": true, "backends": []}),
    );
}
