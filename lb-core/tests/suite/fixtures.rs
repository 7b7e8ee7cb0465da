//! Katran-style fixture tables: `lb-core/fixtures/*.toml`, one per feature.
//!
//! Each case is fed to `decide` in order (cases of a table share one state, so "same flow
//! again" cases see the earlier ones); the action and the whole output (`emit::emit`) are
//! compared with the table, and the counters after the whole table too.
//! `LB_CASE=7 cargo test -p lb-core --test tests fixtures` checks case 7 alone (the cases before it
//! in its table still run, unchecked, to rebuild the state; counters are then not checked).

use crate::provision::{Provision, from_hex, hexdump, provision};
use lb_core::{Action, Nanos, State, decide, emit};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub description: String,
    pub provision: Provision,
    pub case: Vec<Case>,
    pub counters: ExpectedCounters,
}

/// One numbered case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: u32,
    pub description: String,
    #[serde(default)]
    pub at_ms: u64,
    pub input: String,
    /// `forward`, `drop` or `frag_needed`.
    pub action: String,
    pub backend: Option<String>,
    pub new_flow: Option<bool>,
    pub reason: Option<String>,
    pub next_hop_mtu: Option<u16>,
    #[serde(default)]
    pub output: String,
}

/// Counters expected after the whole table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCounters {
    pub forwarded: u64,
    #[serde(default)]
    pub frag_needed: u64,
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    #[serde(default)]
    pub backends: BTreeMap<String, ExpectedBackend>,
}

/// One backend's expected counters.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedBackend {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn tables() -> Vec<(String, Table)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("lb-core/fixtures exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable fixture");
            let table: Table =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                table,
            )
        })
        .collect()
}

/// The action as the table words it, for comparison and messages.
fn describe(state: &State, action: &Action) -> String {
    match action {
        Action::Forward {
            backend, new_flow, ..
        } => {
            let name = state
                .backend(*backend)
                .map(|b| b.spec.name.clone())
                .unwrap_or_default();
            format!("forward to {name} (new_flow {new_flow})")
        }
        Action::FragNeeded { next_hop_mtu } => format!("frag_needed (next hop MTU {next_hop_mtu})"),
        Action::Drop(reason) => format!("drop ({reason})"),
    }
}

fn expected_description(case: &Case) -> String {
    match case.action.as_str() {
        "forward" => format!(
            "forward to {} (new_flow {})",
            case.backend.as_deref().unwrap_or("?"),
            case.new_flow.unwrap_or(false)
        ),
        "frag_needed" => format!(
            "frag_needed (next hop MTU {})",
            case.next_hop_mtu.unwrap_or(0)
        ),
        "drop" => format!("drop ({})", case.reason.as_deref().unwrap_or("?")),
        other => format!("unknown action {other:?}"),
    }
}

/// Runs one case; `None` if it matches, else a report with hexdumps.
fn run_case(state: &mut State, file: &str, case: &Case) -> Option<String> {
    let input =
        from_hex(&case.input).unwrap_or_else(|e| panic!("{file} case {}: input: {e}", case.id));
    let expected =
        from_hex(&case.output).unwrap_or_else(|e| panic!("{file} case {}: output: {e}", case.id));
    let action = decide(state, Nanos::from_millis(case.at_ms), &input);
    let mut actual = Vec::new();
    if !matches!(action, Action::Drop(_)) {
        let cfg = state.config();
        if let Err(e) = emit(&cfg.forward, cfg.framing, &action, &input, &mut actual) {
            actual.clear();
            actual.extend_from_slice(format!("emit error: {e}").as_bytes());
        }
    }
    let (want, got) = (expected_description(case), describe(state, &action));
    if want == got && expected == actual {
        return None;
    }
    Some(format!(
        "{file} case {}: {}\n  expected: {want}\n  actual:   {got}\ninput ({} bytes):\n{}expected output ({} bytes):\n{}actual output ({} bytes):\n{}",
        case.id,
        case.description,
        input.len(),
        hexdump(&input, &input),
        expected.len(),
        hexdump(&expected, &actual),
        actual.len(),
        hexdump(&actual, &expected),
    ))
}

fn check_counters(state: &State, file: &str, want: &ExpectedCounters) -> Vec<String> {
    let mut errors = Vec::new();
    let c = state.counters();
    if c.forwarded != want.forwarded {
        errors.push(format!(
            "{file}: forwarded {} != expected {}",
            c.forwarded, want.forwarded
        ));
    }
    if c.frag_needed != want.frag_needed {
        errors.push(format!(
            "{file}: frag_needed {} != expected {}",
            c.frag_needed, want.frag_needed
        ));
    }
    let drops: BTreeMap<String, u64> = c
        .nonzero_drops()
        .map(|(r, n)| (r.name().to_owned(), n))
        .collect();
    if drops != want.drops {
        errors.push(format!(
            "{file}: drops {drops:?} != expected {:?}",
            want.drops
        ));
    }
    for b in state.backends() {
        let got = ExpectedBackend {
            packets: b.counters.packets,
            bytes: b.counters.bytes,
            flows: b.counters.flows,
        };
        let want_b = want.backends.get(&b.spec.name).cloned().unwrap_or_default();
        if got != want_b {
            errors.push(format!(
                "{file}: backend {} counters {got:?} != expected {want_b:?}",
                b.spec.name
            ));
        }
    }
    errors
}

#[test]
fn fixture_tables() {
    let only: Option<u32> = std::env::var("LB_CASE")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut seen_ids = BTreeMap::new();
    for (file, table) in tables() {
        assert!(!table.description.is_empty(), "{file}: no description");
        let mut state = provision(&table.provision);
        for case in &table.case {
            if let Some(prev) = seen_ids.insert(case.id, file.clone()) {
                failures.push(format!(
                    "case id {} used twice ({prev} and {file})",
                    case.id
                ));
            }
            let check = only.is_none_or(|id| id == case.id);
            let report = run_case(&mut state, &file, case);
            if check {
                ran += 1;
                failures.extend(report);
            }
            if only == Some(case.id) {
                break;
            }
        }
        if only.is_none() {
            failures.extend(check_counters(&state, &file, &table.counters));
        }
    }
    if let Some(id) = only {
        assert_eq!(ran, 1, "LB_CASE={id}: no such case");
    } else {
        assert!(ran >= 20, "only {ran} fixture cases ran");
    }
    assert!(
        failures.is_empty(),
        "{} fixture failure(s):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
