//! What the expectations check, against what the steps recorded and the network reports.

use super::Runtime;
use crate::scenario::model::ExpectKind;
use crate::scenario::result::{ScenarioResult, Verdict};
use crate::scenario::snapfile::{SnapshotCheck, check};

/// Text for a report: printable ASCII kept, the rest escaped.
fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl Runtime<'_> {
    /// Checks one expectation: the verdict, what was found, and a diff for snapshots.
    pub(super) fn expect(
        &self,
        kind: &ExpectKind,
        result: &ScenarioResult,
    ) -> (Verdict, String, Option<String>) {
        let verdict = |ok: bool| if ok { Verdict::Pass } else { Verdict::Fail };
        match kind {
            ExpectKind::Telnet {
                step,
                outcome,
                received,
            } => {
                let Some(r) = self.telnets.get(step) else {
                    return (
                        Verdict::Fail,
                        format!("telnet step `{step}` did not run"),
                        None,
                    );
                };
                let mut ok = true;
                let mut found = vec![format!("outcome {}", r.outcome)];
                if let Some(o) = outcome {
                    ok &= r.outcome == *o;
                }
                if let Some(text) = received {
                    ok &= r.received == text.as_bytes();
                    found.push(format!("received \"{}\"", printable(&r.received)));
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Listener {
                name,
                received,
                bytes,
                connections,
                datagrams,
            } => {
                let st = match self.net.listener(name) {
                    Ok(st) => st,
                    Err(e) => return (Verdict::Fail, e, None),
                };
                let mut ok = true;
                let mut found = Vec::new();
                if let Some(text) = received {
                    ok &= st.received == text.as_bytes();
                    found.push(format!("received \"{}\"", printable(&st.received)));
                }
                if let Some(b) = bytes {
                    ok &= st.bytes == *b;
                    found.push(format!("{} bytes", st.bytes));
                }
                if let Some(c) = connections {
                    ok &= st.connections == *c;
                    found.push(format!("{} connection(s)", st.connections));
                }
                if let Some(d) = datagrams {
                    ok &= st.datagrams == *d;
                    found.push(format!("{} datagram(s)", st.datagrams));
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Conntrack {
                read,
                since,
                delta,
                entries,
            } => {
                let Some(now) = self.readings.get(read) else {
                    return (
                        Verdict::Fail,
                        format!("conntrack reading `{read}` was not taken"),
                        None,
                    );
                };
                let mut ok = true;
                let mut found = Vec::new();
                if let Some(since) = since {
                    (ok, found) = self.deltas(since, now, delta);
                }
                if let Some(want) = entries {
                    match &self.entries[read] {
                        Ok(n) => {
                            ok &= n == want;
                            found.push(format!(
                                "{n} matching entr{}",
                                if *n == 1 { "y" } else { "ies" }
                            ));
                        }
                        Err(e) => {
                            ok = false;
                            found.push(format!("entries unknown: {e}"));
                        }
                    }
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Nfqueue { read, since, delta } => {
                let Some(now) = self.readings.get(read) else {
                    return (
                        Verdict::Fail,
                        format!("nfqueue reading `{read}` was not taken"),
                        None,
                    );
                };
                let (ok, found) = self.deltas(since, now, delta);
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Tally {
                read,
                since,
                delta,
                counts,
            } => {
                let Some(now) = self.readings.get(read) else {
                    return (Verdict::Fail, format!("tally `{read}` was not taken"), None);
                };
                let mut ok = true;
                let mut found = Vec::new();
                for (counter, want) in counts {
                    let n = now.get(counter).copied().unwrap_or_default();
                    ok &= n == *want;
                    found.push(format!("{counter} {n}"));
                }
                if let Some(since) = since {
                    let (d_ok, d_found) = self.deltas(since, now, delta);
                    ok &= d_ok;
                    found.extend(d_found);
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Trace { snapshot, ladder } => {
                let Some(trace) = &result.trace else {
                    return (
                        Verdict::Fail,
                        "no trace: the scenario captures nothing".into(),
                        None,
                    );
                };
                let mut content = trace.clone();
                if *ladder && let Some(l) = &result.ladder {
                    content.push('\n');
                    content.push_str(l);
                }
                let path = self.s.snapshot_path(snapshot);
                let source = self
                    .s
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match check(&path, &source, &content, self.opts.snapshots) {
                    Ok(SnapshotCheck::Matches) => {
                        (Verdict::Pass, format!("matches {}", path.display()), None)
                    }
                    Ok(SnapshotCheck::Updated { existed }) => (
                        Verdict::Updated,
                        format!(
                            "{} {}",
                            if existed { "updated" } else { "created" },
                            path.display()
                        ),
                        None,
                    ),
                    Ok(SnapshotCheck::Differs {
                        diff,
                        existed,
                        written,
                    }) => {
                        let mut d = if existed {
                            format!("differs from {}", path.display())
                        } else {
                            format!("{} does not exist", path.display())
                        };
                        match written {
                            Some(w) => d.push_str(&format!(
                                "; this run's trace is in {} (review: cargo insta review, or lab run --accept)",
                                w.display()
                            )),
                            None => d.push_str("; nothing written (CI or INSTA_UPDATE=no)"),
                        }
                        (Verdict::Fail, d, Some(diff))
                    }
                    Err(e) => (Verdict::Fail, format!("{}: {e}", path.display()), None),
                }
            }
        }
    }
}

impl Runtime<'_> {
    /// Each counter of `delta` as it changed from the reading `since` to `now`: whether every
    /// change is the one expected, and the changes found.
    fn deltas(
        &self,
        since: &str,
        now: &crate::backend::Counters,
        delta: &indexmap::IndexMap<String, i64>,
    ) -> (bool, Vec<String>) {
        let before = &self.readings[since];
        let mut ok = true;
        let mut found = Vec::new();
        for (counter, want) in delta {
            match (before.get(counter), now.get(counter)) {
                (Some(a), Some(b)) => {
                    let d = *b as i64 - *a as i64;
                    ok &= d == *want;
                    found.push(format!("{counter} {d:+}"));
                }
                _ => {
                    ok = false;
                    found.push(format!("{counter}: not reported by this kernel"));
                }
            }
        }
        (ok, found)
    }
}
