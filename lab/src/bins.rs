//! Finding the workspace's binaries (`lb`, `lab`) from the running program.

use std::path::{Path, PathBuf};

/// The workspace binary `name` beside `exe`, or one directory up when `exe` is a test in
/// `target/<profile>/deps/`; the error names where it looked, `env` (the variable that
/// overrides it) and `build` (the command that makes it).
pub fn sibling_bin(exe: &Path, name: &str, env: &str, build: &str) -> Result<PathBuf, String> {
    let mut looked = Vec::new();
    if let Some(dir) = exe.parent() {
        looked.push(dir.join(name));
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            looked.push(up.join(name));
        }
    }
    looked.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "the `{name}` binary was not found (looked at {}; or set {env}): build it with `{build}`",
            looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}
