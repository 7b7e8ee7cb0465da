//! Where parsing is: the file's name and text (for line numbers), and the small checks every
//! part of the format shares (names, socket addresses, hosts, raw tables).

use crate::resolve::Plan;
use crate::scenario::model::ScenarioError;
use std::net::SocketAddrV4;

/// The file being parsed: its name for errors, its text for line numbers.
pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Cx<'_> {
    /// The 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> Option<usize> {
        let end = offset.min(self.text.len());
        Some(
            self.text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        )
    }
    /// An error at `line`, in `context` (`step 3 (telnet)`).
    pub(super) fn err(
        &self,
        line: Option<usize>,
        context: impl Into<String>,
        msg: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError {
            file: self.file.to_string(),
            line,
            context: context.into(),
            message: msg.into(),
        }
    }
}

/// A name the format accepts: 1-32 of a-z, 0-9, `-`, `_`.
pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// `10.0.0.50:8080`.
pub(super) fn socket_addr(s: &str) -> Result<SocketAddrV4, String> {
    s.parse::<SocketAddrV4>().map_err(|_| {
        format!("`{s}` is not an IPv4 address and port (write it like 10.0.0.50:8080)")
    })
}

/// The error for a host the topology lacks, naming the hosts it has.
pub(super) fn unknown_host(plan: &Plan, host: &str) -> String {
    let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    format!(
        "no host `{host}` in the topology (hosts: {})",
        hosts.join(", ")
    )
}

/// A TOML table as one of the raw step or expectation structs; serde's message on one line.
pub(super) fn convert<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().replace('\n', " "))
}
