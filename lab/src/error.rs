//! Errors of the runtime: each names the lab, node, link, rule or file involved.

use std::path::{Path, PathBuf};

/// Something the lab runtime could not do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    #[error("this needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo")]
    NotRoot,
    /// A lab name with characters we don't allow.
    #[error(
        "bad lab name `{0}`: use 1-24 characters from a-z, 0-9 and `-`, starting with a letter or digit"
    )]
    BadName(String),
    /// A lab of that name exists.
    #[error("a lab named `{0}` already exists (see `lab list`; remove it with `lab down {0}`)")]
    NameTaken(String),
    /// No record of that lab.
    #[error("no lab named `{0}` (see `lab list`)")]
    NoSuchLab(String),
    /// More or fewer than one lab exists where one was expected.
    #[error("{0}")]
    Ambiguous(String),
    /// A node that isn't in the lab.
    #[error("lab `{lab}` has no host `{node}` (hosts: {known})")]
    NoSuchNode {
        /// Lab name.
        lab: String,
        /// The name asked for.
        node: String,
        /// The names that exist.
        known: String,
    },
    /// A state record that doesn't parse.
    #[error("state record {0} is unreadable: {1}")]
    Corrupt(PathBuf, String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A namespace could not be created, entered or removed.
    #[error("namespace {netns} (node {node}): {message}")]
    Namespace {
        /// Node name.
        node: String,
        /// Namespace name.
        netns: String,
        /// What failed.
        message: String,
    },
    /// A netlink operation on a node failed.
    #[error("{node}: {what}: {message}")]
    Netlink {
        /// Node name.
        node: String,
        /// What was being done, e.g. `create link s1-eth1 <-> h1-eth0`.
        what: String,
        /// The kernel's answer.
        message: String,
    },
    /// A sysctl could not be written.
    #[error("{node}: sysctl {key}={value}: {message}")]
    Sysctl {
        /// Node name.
        node: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Why.
        message: String,
    },
    /// A firewall batch was rejected.
    #[error("{node}: firewall rule rejected: `{rule}`: {message}")]
    Firewall {
        /// Host name.
        node: String,
        /// The rule as written (or the nft ruleset's failing line).
        rule: String,
        /// The tool's message.
        message: String,
    },
    /// A program the lab needs is missing.
    #[error("`{program}` is not installed: {fix}")]
    MissingTool {
        /// The program.
        program: String,
        /// The command that installs it.
        fix: String,
    },
    /// A process could not be started in a host.
    #[error("{node}: cannot start `{command}`: {message}")]
    Spawn {
        /// Host name.
        node: String,
        /// The command.
        command: String,
        /// Why.
        message: String,
    },
    /// A Mininet switch has no namespace of its own to run or capture in.
    #[error(
        "{node} is a Mininet switch: bridge {bridge} in the root namespace, where lab runs nothing (capture its ports: `lab capture {node}:eth1`)"
    )]
    RootSwitch {
        /// The switch.
        node: String,
        /// Its bridge's name.
        bridge: String,
    },
    /// Something the topology asks for that this builder cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// `lab impair`'s arguments: no such link end, or parameters that do not parse.
    #[error("{0}")]
    BadImpairment(String),
    /// A link's impairment could not be applied.
    #[error("link {link}: impairment: {message}")]
    Impair {
        /// The direction, `h1-eth0>s1-eth1`.
        link: String,
        /// What failed.
        message: String,
    },
    /// Mininet could not build the lab (the helper's own message).
    #[error("mininet: {0}")]
    Mininet(String),
    /// A user namespace for a rootless lab could not be made or entered.
    #[error("rootless: {0}")]
    Rootless(String),
    /// Teardown left something behind.
    #[error("removing lab `{lab}` left problems: {}", problems.join("; "))]
    Teardown {
        /// Lab name.
        lab: String,
        /// What could not be removed.
        problems: Vec<String>,
    },
}

impl LabError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> LabError {
        LabError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
