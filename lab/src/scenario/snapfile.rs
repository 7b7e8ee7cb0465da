//! Trace snapshots of scenarios, stored beside the scenario file as `<name>.snap` in insta's
//! file format (a `---` header with `source:`, then the text), so `cargo insta review` can
//! review the `.snap.new` files a run leaves, and the same rules as insta decide what is
//! written:
//!
//! | environment | missing or different snapshot |
//! |---|---|
//! | `CI` set (not `false`/`0`), or `INSTA_UPDATE=no` | fails, writes nothing |
//! | `INSTA_UPDATE=always`, or `lab run --accept` | writes `<name>.snap`, passes (reported as updated) |
//! | otherwise (`INSTA_UPDATE` unset, `auto` or `new`) | fails, writes `<name>.snap.new` beside it |

use std::path::{Path, PathBuf};

/// What a mismatch does to files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Write nothing (CI).
    Compare,
    /// Write `<name>.snap.new` for review.
    New,
    /// Overwrite `<name>.snap`.
    Accept,
}

impl SnapshotMode {
    /// The mode insta would use in this environment.
    pub fn from_env() -> SnapshotMode {
        let update = std::env::var("INSTA_UPDATE").unwrap_or_default();
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        match update.as_str() {
            "always" => SnapshotMode::Accept,
            "no" => SnapshotMode::Compare,
            _ if ci => SnapshotMode::Compare,
            _ => SnapshotMode::New,
        }
    }
}

/// The result of comparing a run with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotCheck {
    /// Same text.
    Matches,
    /// Missing or different, and nothing was written.
    Differs {
        /// A unified diff (snapshot → this run); every line is new when the file is missing.
        diff: String,
        /// The file exists.
        existed: bool,
        /// `.snap.new` written here, if any.
        written: Option<PathBuf>,
    },
    /// Missing or different, and the snapshot was replaced (accept mode).
    Updated {
        /// The file exists.
        existed: bool,
    },
}

/// Snapshot text as compared: line endings normalized, trailing whitespace at the end removed.
fn normalized(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

/// Reads the text of an insta-format snapshot file (everything after the header).
pub fn read_snapshot(path: &Path) -> std::io::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(body(&text)))
}

/// The body of a snapshot file: after the second `---` line when there is a header.
fn body(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    if let Some(rest) = text.strip_prefix("---\n")
        && let Some(end) = rest.find("\n---\n")
    {
        return rest[end + 5..].to_string();
    }
    text
}

/// The file text for `content`.
pub fn render_snapshot(source: &str, content: &str) -> String {
    format!("---\nsource: {source}\n---\n{}\n", normalized(content))
}

/// A unified diff from `old` to `new`, `-` for the snapshot, `+` for this run.
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header("snapshot", "this run")
        .to_string()
}

/// Compares `content` with the snapshot at `path`, writing files as `mode` says.
pub fn check(
    path: &Path,
    source: &str,
    content: &str,
    mode: SnapshotMode,
) -> std::io::Result<SnapshotCheck> {
    let old = read_snapshot(path)?;
    let new = normalized(content);
    if let Some(o) = &old
        && normalized(o) == new
    {
        // A stale .snap.new of an earlier failing run would mislead a reviewer.
        let _ = std::fs::remove_file(new_path(path));
        return Ok(SnapshotCheck::Matches);
    }
    let existed = old.is_some();
    let file = render_snapshot(source, &new);
    match mode {
        SnapshotMode::Accept => {
            std::fs::write(path, file)?;
            let _ = std::fs::remove_file(new_path(path));
            Ok(SnapshotCheck::Updated { existed })
        }
        SnapshotMode::New | SnapshotMode::Compare => {
            let old_text = old
                .map(|o| format!("{}\n", normalized(&o)))
                .unwrap_or_default();
            let diff = diff(&old_text, &format!("{new}\n"));
            let written = if mode == SnapshotMode::New {
                let p = new_path(path);
                std::fs::write(&p, file)?;
                Some(p)
            } else {
                None
            };
            Ok(SnapshotCheck::Differs {
                diff,
                existed,
                written,
            })
        }
    }
}

/// `<name>.snap.new` beside `<name>.snap`.
pub fn new_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lab-snapfile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("x.snap")
    }

    #[test]
    fn reads_insta_files_and_compares_normalized() {
        let p = tmp("read");
        std::fs::write(&p, "---\nsource: x.toml\n---\nline 1\nline 2\n").unwrap();
        assert_eq!(
            read_snapshot(&p).unwrap().as_deref(),
            Some("line 1\nline 2\n")
        );
        let r = check(&p, "x.toml", "line 1\r\nline 2\n\n", SnapshotMode::Compare).unwrap();
        assert_eq!(r, SnapshotCheck::Matches);
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn modes_decide_what_is_written() {
        let p = tmp("modes");
        std::fs::write(&p, render_snapshot("x.toml", "a\nb\n")).unwrap();
        // Compare: a diff, nothing written.
        match check(&p, "x.toml", "a\nc\n", SnapshotMode::Compare).unwrap() {
            SnapshotCheck::Differs {
                diff,
                existed,
                written,
            } => {
                assert!(existed);
                assert_eq!(written, None);
                assert!(diff.contains("-b\n") && diff.contains("+c\n"), "{diff}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!new_path(&p).exists());
        // New: .snap.new beside it, the .snap untouched.
        match check(&p, "x.toml", "a\nc\n", SnapshotMode::New).unwrap() {
            SnapshotCheck::Differs {
                written: Some(w), ..
            } => assert_eq!(w, new_path(&p)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_snapshot(&new_path(&p)).unwrap().as_deref(),
            Some("a\nc\n")
        );
        assert_eq!(read_snapshot(&p).unwrap().as_deref(), Some("a\nb\n"));
        // Accept: replaced, .snap.new removed; then it matches.
        assert_eq!(
            check(&p, "x.toml", "a\nc\n", SnapshotMode::Accept).unwrap(),
            SnapshotCheck::Updated { existed: true }
        );
        assert!(!new_path(&p).exists());
        assert_eq!(
            check(&p, "x.toml", "a\nc", SnapshotMode::Compare).unwrap(),
            SnapshotCheck::Matches
        );
        // Missing: every line is new.
        std::fs::remove_file(&p).unwrap();
        match check(&p, "x.toml", "a\n", SnapshotMode::Compare).unwrap() {
            SnapshotCheck::Differs {
                existed: false,
                diff,
                ..
            } => assert!(diff.contains("+a"), "{diff}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
