//! `lb ctl`: the operator's unix socket on the server and on the agent, both ends.
//!
//! One JSON object per line each way: a [`Request`] in (`{"cmd":"drain","name":"h2"}`, the
//! typed messages of `lb_core::protocol::ctl`), `{"ok":true,…}` or `{"ok":false,"error":"…"}`
//! out. The socket is created mode 0600 (root's tool); a stale file from a crashed run is
//! replaced, a live one is left alone. [`run`] is `lb ctl` itself, the client.

use crate::lines::{LineReader, write_line};
use anyhow::{Context, Result, bail};
use lb_core::protocol::ctl::{Done, Refusal, Request, RequestError, Role, WireRequest};
use serde_json::{Value, json};
use std::cell::Cell;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

/// Longest request line.
const MAX_REQUEST: usize = 4096;
/// `lb ctl` connections served at once.
const MAX_CLIENTS: usize = 16;

/// A refusal as the JSON answer.
pub fn error(msg: impl std::fmt::Display) -> Value {
    json!(Refusal::new(msg))
}

/// A success with a message, as the JSON answer.
pub fn done(msg: impl std::fmt::Display) -> Value {
    json!(Done::new(msg))
}

/// The refusal of a request that a process in `role` does not serve.
pub fn not_served(req: &Request, role: Role) -> Value {
    error(RequestError::NotServed {
        verb: req.verb().to_string(),
        role,
    })
}

/// What answers requests.
pub type Handler = Rc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Value>>>>;

/// A bound ctl socket; the file is removed on drop.
pub struct CtlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl CtlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, for the runtime that serves it.
    pub fn take(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the ctl socket at `path`. If a live process serves it already, that is an error when
/// the path was given explicitly and a warning (no ctl socket) when it is the default.
pub fn bind(path: &Path, explicit: bool) -> Result<Option<CtlSocket>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the directory of {}", path.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            if explicit {
                bail!("ctl socket {}: another process serves it", path.display());
            }
            tracing::warn!(
                "ctl socket {} is served by another process: running without one (give --ctl-socket)",
                path.display()
            );
            return Ok(None);
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale ctl socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("bind ctl socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("ctl socket non-blocking")?;
    Ok(Some(CtlSocket {
        listener: Some(listener),
        path: path.to_path_buf(),
    }))
}

/// Serves `listener` on the current `LocalSet` for a process in `role` until the task is
/// dropped; requests for the other role are refused before `handler` sees them.
pub async fn serve(listener: UnixListener, role: Role, handler: Handler) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("ctl socket: {e}");
            return;
        }
    };
    let active = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("ctl socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.get() >= MAX_CLIENTS {
            let _ = stream.try_write(b"{\"ok\":false,\"error\":\"too many ctl clients\"}\n");
            continue;
        }
        active.set(active.get() + 1);
        let (active, handler) = (Rc::clone(&active), Rc::clone(&handler));
        tokio::task::spawn_local(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = LineReader::new(r, MAX_REQUEST);
            loop {
                let line = match tokio::time::timeout(Duration::from_secs(60), lines.next()).await {
                    Ok(Ok(l)) => l,
                    Ok(Err(crate::lines::LineError::TooLong(n))) => {
                        let e = error(format!("request longer than {n} bytes"));
                        let _ = write_line(&mut w, &e.to_string(), Duration::from_secs(5)).await;
                        break;
                    }
                    _ => break,
                };
                let answer = match serde_json::from_str::<WireRequest>(&line) {
                    Ok(wire) => match wire.for_role(role) {
                        Ok(req) => match req.refused_by(role) {
                            None => handler(req).await,
                            Some(refusal) => json!(refusal),
                        },
                        Err(e) => error(e),
                    },
                    Err(e) => error(format!("bad request: {e}")),
                };
                if write_line(&mut w, &answer.to_string(), Duration::from_secs(5))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            active.set(active.get() - 1);
        });
    }
}

/// Sends one request to the socket at `path` and returns the answer.
pub fn call(path: &Path, req: &Request) -> Result<Value> {
    let s = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach {} (is lb running there? see --socket)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    (&s).write_all(line.as_bytes())
        .with_context(|| format!("write to {}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(&s)
        .read_line(&mut answer)
        .with_context(|| format!("read from {}", path.display()))?;
    if answer.is_empty() {
        bail!("{} closed without answering", path.display());
    }
    serde_json::from_str(&answer).with_context(|| format!("answer from {}", path.display()))
}

/// A request the other end refused (exit code 2, like bad input).
#[derive(Debug, thiserror::Error)]
#[error("{verb}: {reason}")]
pub struct Refused {
    /// The request's verb.
    pub verb: &'static str,
    /// The answer's `error`.
    pub reason: String,
}

/// `lb ctl`: sends `req` to the socket at `path` and prints the answer, as JSON if `json`.
pub fn run(path: &Path, req: &Request, json: bool) -> Result<()> {
    let answer = call(path, req)?;
    if answer.get("ok").and_then(Value::as_bool) != Some(true) {
        let e = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused without a reason");
        if json {
            println!("{answer}");
        }
        bail!(Refused {
            verb: req.verb(),
            reason: e.to_string(),
        });
    }
    if json {
        println!("{answer}");
    } else {
        print!("{}", render(req.verb(), &answer));
    }
    Ok(())
}

fn num(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// Human rendering of an answer.
pub fn render(cmd: &str, v: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        out.push_str(m);
        out.push('\n');
        return out;
    }
    match cmd {
        "backends" => {
            let rows: Vec<Vec<String>> = v
                .get("backends")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|b| {
                            vec![
                                num(b, "name"),
                                num(b, "addr"),
                                num(b, "origin"),
                                num(b, "status"),
                                num(b, "health"),
                                num(b, "weight"),
                                num(b, "packets"),
                                num(b, "bytes"),
                                num(b, "flows"),
                                num(b, "tracked"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let head = [
                "NAME", "ADDR", "ORIGIN", "STATUS", "HEALTH", "WEIGHT", "PACKETS", "BYTES",
                "FLOWS", "TRACKED",
            ];
            let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            let line = |cells: Vec<&str>| {
                let mut l = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ");
                l.truncate(l.trim_end().len());
                l + "\n"
            };
            out.push_str(&line(head.to_vec()));
            for r in &rows {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
            }
            if rows.is_empty() {
                out.push_str("(no backends)\n");
            }
        }
        _ => {
            if let Value::Object(m) = v {
                render_object(&mut out, m, 0);
            }
        }
    }
    out
}

/// `key: value` lines with the values aligned, nested objects indented under their key.
fn render_object(out: &mut String, m: &serde_json::Map<String, Value>, depth: usize) {
    let keys = m.keys().filter(|k| *k != "ok");
    let width = keys.clone().map(String::len).max().unwrap_or(0) + 1;
    let pad = "  ".repeat(depth);
    for k in keys {
        match &m[k] {
            Value::Object(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{k}:\n"));
                render_object(out, inner, depth + 1);
            }
            Value::Object(_) => out.push_str(&format!("{pad}{:<width$} -\n", format!("{k}:"))),
            val => out.push_str(&format!(
                "{pad}{:<width$} {}\n",
                format!("{k}:"),
                scalar(val)
            )),
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        // Durations and rates: three decimals are enough for a person.
        Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_backend_table() {
        let v = json!({"ok": true, "backends": [
            {"name": "h2", "addr": "10.0.0.2", "origin": "agent", "status": "active",
             "health": "up", "weight": 1, "packets": 10, "bytes": 600, "flows": 2, "tracked": 1}
        ]});
        let t = render("backends", &v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  ADDR"), "{t}");
        assert!(lines[1].starts_with("h2    10.0.0.2  agent"), "{t}");
        assert_eq!(
            render("pause", &json!({"ok": true, "message": "paused"})),
            "paused\n"
        );
    }

    #[test]
    fn renders_state_aligned_with_short_numbers() {
        let v = json!({"ok": true, "name": "h2", "registered_for_s": 1.821847557,
            "drops": {}, "control_counters": {"accepted": 2, "invalid": 0}});
        assert_eq!(
            render("state", &v),
            "control_counters:\n\
             \x20 accepted: 2\n\
             \x20 invalid:  0\n\
             drops:            -\n\
             name:             h2\n\
             registered_for_s: 1.822\n"
        );
    }
}
