//! Finding the workspace's binaries (`lb`, `lab`) from the running program.

use std::path::{Path, PathBuf};

/// The workspace binary `name`: the file the variable `env` names, else `name` beside the
/// running executable (`target/<profile>/`; the program itself when it is `name`), else one
/// directory up when the executable is a test in `target/<profile>/deps/`. An error names
/// where it looked and `build`, the command that makes it.
pub fn workspace_bin(name: &str, env: &str, build: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{env}={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate the running executable: {e}"))?;
    sibling_bin(&exe, name, env, build)
}

fn sibling_bin(exe: &Path, name: &str, env: &str, build: &str) -> Result<PathBuf, String> {
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
