//! The state record of a lab: everything it created and every process it started, written
//! before anything is created so `lab down` / `lab clean` can remove exactly that — also after
//! the creating process died by SIGKILL.
//!
//! Records live in [`state_dir()`] as `<name>.json`; they are replaced atomically (write + rename).

use crate::error::LabError;
use crate::resolve::Plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where state records live (`LAB_STATE_DIR` overrides `/run/lab`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("LAB_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/lab"))
}

/// Where per-lab artifact directories live (`LAB_ARTIFACTS` overrides `/var/tmp/lab`).
pub fn artifact_root() -> PathBuf {
    std::env::var_os("LAB_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lab"))
}

/// Where namespaces are bind-mounted, as `ip netns` does.
pub const NETNS_DIR: &str = "/run/netns";

/// A process identity that survives pid reuse: pid plus its start time in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: i32,
    /// Field 22 of /proc/PID/stat.
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a running pid, if it exists.
    pub fn of(pid: i32) -> Option<ProcessId> {
        Self::stat(pid).map(|(_, start_time)| ProcessId { pid, start_time })
    }

    /// (state letter, start time) from /proc/PID/stat.
    fn stat(pid: i32) -> Option<(char, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let mut fields = rest.split(' ');
        let state = fields.next()?.chars().next()?;
        let start_time = fields.nth(18)?.parse().ok()?;
        Some((state, start_time))
    }

    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id() as i32;
        ProcessId::of(pid).unwrap_or(ProcessId { pid, start_time: 0 })
    }

    /// True if this exact process (not a reuse of its pid) still runs (zombies count as dead).
    pub fn alive(&self) -> bool {
        Self::stat(self.pid).is_some_and(|(state, start)| start == self.start_time && state != 'Z')
    }

    /// True while this process runs with its namespaces (a rootless lab's holder): one that is
    /// ending gives them up before it is a zombie, while /proc still shows it running.
    pub fn holds_namespaces(&self) -> bool {
        self.alive() && std::fs::metadata(format!("/proc/{}/ns/mnt", self.pid)).is_ok()
    }
}

/// How far a lab got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created (or its creator died while creating it).
    Creating,
    /// Fully deployed.
    Up,
    /// Being removed.
    Removing,
}

/// A namespace the lab owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsRecord {
    /// The node it belongs to.
    pub node: String,
    /// Its name under /run/netns.
    pub netns: String,
}

impl NsRecord {
    /// The bind-mount path.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }
}

/// A background process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// Identity (pid + start time): only this exact process is ever signalled.
    pub id: ProcessId,
    /// Host it runs in.
    pub host: String,
    /// Short name given by the starter.
    pub name: String,
    /// Command line.
    pub argv: Vec<String>,
    /// Its stdout+stderr log file.
    pub log: PathBuf,
}

/// Which switch Mininet runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchKind {
    /// Mininet's `LinuxBridge` (`mn --switch lxbr`).
    #[default]
    Lxbr,
    /// Mininet's `OVSSwitch` in standalone mode (`mn --switch ovs,failMode=standalone`).
    Ovs,
}

impl SwitchKind {
    /// Its `--switch` name.
    pub fn name(self) -> &'static str {
        match self {
            SwitchKind::Lxbr => "lxbr",
            SwitchKind::Ovs => "ovs",
        }
    }
}

/// What a Mininet-built lab has outside its namespaces, recorded before it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MininetRecord {
    /// The switch kind.
    pub switch: SwitchKind,
    /// Switch node → its bridge's name in the root namespace.
    pub bridges: BTreeMap<String, String>,
    /// Switch port as the plan names it (`s1-eth1`) → its name in the root namespace.
    pub ports: BTreeMap<String, String>,
    /// The helper and Mininet's shells while they run (only these are ever signalled).
    pub processes: Vec<ProcessId>,
}

/// Where a lab lives when it was made inside a user namespace (a rootless lab): its
/// namespaces' names are mounts in that namespace's own mount namespace, seen only from inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernsRecord {
    /// The process whose user, mount and network namespaces hold the lab: `lab up`'s holder,
    /// or the process that entered them (`lab run`, a test binary). `lab exec` joins it.
    pub holder: ProcessId,
    /// True when `holder` was started for this lab alone: removing the lab stops it.
    pub dedicated: bool,
    /// The user namespace's inode: what is left in it once `holder` is gone belongs to the lab.
    pub user_ns: u64,
}

/// Everything needed to list and remove one lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// Lab name.
    pub name: String,
    /// Owning process; `None` for a persistent lab from `lab up`.
    pub owner: Option<ProcessId>,
    /// The process creating or removing the lab, while its status is not `Up` (`None` in
    /// records written before this field existed).
    #[serde(default)]
    pub creator: Option<ProcessId>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Progress.
    pub status: Status,
    /// Namespaces, created or about to be.
    pub namespaces: Vec<NsRecord>,
    /// Background processes.
    pub processes: Vec<ProcRecord>,
    /// Logs, pcaps and traces of this lab.
    pub artifact_dir: PathBuf,
    /// The resolved topology.
    pub plan: Plan,
    /// What Mininet built outside the namespaces, for a lab built by Mininet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mininet: Option<MininetRecord>,
    /// The user namespace the lab lives in, for a lab not made by the machine's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<UsernsRecord>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StateRecord {
    /// The record file of lab `name`.
    pub fn path_of(name: &str) -> PathBuf {
        state_dir().join(format!("{name}.json"))
    }

    /// This record's file.
    pub fn path(&self) -> PathBuf {
        Self::path_of(&self.name)
    }

    /// Claims the name (fails if a lab of that name exists) and writes the record.
    pub fn create(&self) -> Result<(), LabError> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        let path = self.path();
        // Written whole under a temporary name, then linked into place: the name is claimed
        // atomically (a link never replaces a file) and a reader never sees a half-written
        // record, even if this process is killed at any point.
        let tmp = self.write_tmp()?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(LabError::NameTaken(self.name.clone()))
            }
            Err(e) => Err(LabError::io(&path, e)),
        }
    }

    /// The record written to a temporary file beside its place.
    fn write_tmp(&self) -> Result<PathBuf, LabError> {
        let path = self.path();
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| LabError::Corrupt(path.clone(), e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| LabError::io(&tmp, e))?;
        f.write_all(&json).map_err(|e| LabError::io(&tmp, e))?;
        Ok(tmp)
    }

    /// Atomically replaces the record file.
    pub fn save(&self) -> Result<(), LabError> {
        let path = self.path();
        let tmp = self.write_tmp()?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io(&path, e))
    }

    /// Loads the record of lab `name`.
    pub fn load(name: &str) -> Result<StateRecord, LabError> {
        let path = Self::path_of(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NoSuchLab(name.to_string()));
            }
            Err(e) => return Err(LabError::io(&path, e)),
        };
        serde_json::from_slice(&text).map_err(|e| LabError::Corrupt(path, e.to_string()))
    }

    /// Every lab's record, sorted by creation time. Unreadable records are returned as errors.
    pub fn all() -> Vec<Result<StateRecord, LabError>> {
        let Ok(dir) = std::fs::read_dir(state_dir()) else {
            return vec![];
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(String::from)
            })
            .collect();
        names.sort();
        let mut all: Vec<_> = names.iter().map(|n| Self::load(n)).collect();
        all.sort_by_key(|r| r.as_ref().map(|r| r.created_ms).unwrap_or(0));
        all
    }

    /// Removes temporary record files left by processes killed while writing one, and empty
    /// records (an older `lab` created the file before writing it; nothing is created for a
    /// lab before its record is written); returns how many.
    pub fn remove_stale_tmp() -> usize {
        let Ok(dir) = std::fs::read_dir(state_dir()) else {
            return 0;
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| n.ends_with(".json"))
                    && e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0)
                {
                    return true;
                }
                let Some(pid) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".tmp"))
                    .and_then(|n| n.rsplit('.').next())
                    .and_then(|p| p.parse::<i32>().ok())
                else {
                    return false;
                };
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// True if the owner is gone (for a persistent lab: only if it was left half built, or
    /// its rootless holder ended).
    pub fn orphaned(&self) -> bool {
        self.owner.is_some_and(|o| !o.alive()) || self.half_done() || self.holder_gone()
    }

    /// True for a rootless lab whose holder has ended: its namespaces went with it (or live on
    /// only through processes left in them, which `lab clean` stops).
    pub fn holder_gone(&self) -> bool {
        self.userns
            .as_ref()
            .is_some_and(|u| !u.holder.holds_namespaces())
    }

    /// True when the process creating or removing the lab died before it finished: the lab is
    /// half built (or half removed) whatever its owner, persistent included.
    pub fn half_done(&self) -> bool {
        self.status != Status::Up && self.creator.is_some_and(|c| !c.alive())
    }

    /// Deletes the record file.
    pub fn delete(&self) -> Result<(), LabError> {
        match std::fs::remove_file(self.path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LabError::io(&self.path(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_identity_of_self_is_alive() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !reused.alive(),
            "a different start time means a different process"
        );
    }
}
