//! Errors of the parse and resolve steps: each names where (file and line) and which field.

use std::fmt;

/// Where a topology came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A topology file, with its text (to turn byte offsets into line numbers).
    File {
        /// The path as the user gave it.
        path: String,
        /// The file's text.
        text: String,
    },
    /// A built-in topology such as `single,3`.
    Builtin(String),
}

impl Default for Origin {
    fn default() -> Self {
        Origin::Builtin("inline".into())
    }
}

impl Origin {
    /// The 1-based line number of a byte offset, when the topology came from a file.
    pub fn line_of(&self, offset: usize) -> Option<usize> {
        match self {
            Origin::File { text, .. } => {
                let end = offset.min(text.len());
                Some(
                    text.as_bytes()[..end]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1,
                )
            }
            Origin::Builtin(_) => None,
        }
    }

    /// A short name for messages: the path, or `builtin single,3`.
    pub fn describe(&self) -> String {
        match self {
            Origin::File { path, .. } => path.clone(),
            Origin::Builtin(spec) => format!("builtin {spec}"),
        }
    }
}

/// A topology that could not be read or is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TopologyError {
    /// File path or built-in name.
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, e.g. `links[2]` or `hosts.h1.interfaces.eth0`.
    pub field: String,
    /// What is wrong.
    pub kind: TopologyErrorKind,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.origin, line)?,
            None => write!(f, "{}: ", self.origin)?,
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The ways a topology can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyErrorKind {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(String),
    /// TOML syntax or a field of the wrong type or name.
    #[error("{0}")]
    Syntax(String),
    /// A Mininet custom topology that lab cannot take (the helper's or the converter's reason).
    #[error("{0}")]
    Mininet(String),
    /// A built-in spec like `single,K` that doesn't parse.
    #[error("{0}")]
    BadBuiltin(String),
    /// A link or route names a node that doesn't exist.
    #[error("unknown node `{name}` (nodes: {known})")]
    UnknownNode {
        /// The name used.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A node name is not usable in namespace and interface names.
    #[error(
        "bad node name `{0}`: use 1-8 characters from a-z, 0-9 and `_`, starting with a letter"
    )]
    BadNodeName(String),
    /// A name is used twice.
    #[error("`{0}` is defined twice (hosts and switches share one name space)")]
    DuplicateNode(String),
    /// An interface name longer than the kernel's 15 bytes.
    #[error("interface name `{name}` is {len} bytes; Linux allows at most 15")]
    InterfaceNameTooLong {
        /// The full interface name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A bad interface short name.
    #[error("bad interface name `{0}`: use a-z, 0-9 and `_` (e.g. eth0)")]
    BadInterfaceName(String),
    /// The same interface appears in two links.
    #[error("interface `{0}` is already used by another link")]
    InterfaceReused(String),
    /// An interface has addresses but no link.
    #[error("interface `{0}` has addresses but no link connects it")]
    InterfaceNotLinked(String),
    /// Not a valid `ADDRESS/PREFIX`.
    #[error("bad CIDR `{value}`: {reason}")]
    BadCidr {
        /// What was written.
        value: String,
        /// Why it's wrong.
        reason: String,
    },
    /// Not a valid IPv4 address.
    #[error("bad IPv4 address `{0}`")]
    BadAddress(String),
    /// An interface address used twice.
    #[error("address {addr} is already assigned to {first}")]
    DuplicateAddress {
        /// The address.
        addr: String,
        /// Where it was first assigned.
        first: String,
    },
    /// The default gateway is not on any of the host's subnets.
    #[error("gateway {0} is not inside any subnet of this host's interfaces")]
    GatewayUnreachable(String),
    /// An MTU outside 68..=65535.
    #[error("MTU {0} is out of range (68 to 65535)")]
    BadMtu(i64),
    /// Traffic control parameters out of range.
    #[error("bad tc parameter: {0}")]
    BadTc(String),
    /// Link impairments that do not parse or do not fit together.
    #[error("bad impairment: {0}")]
    BadImpairment(String),
    /// A MAC address that is not six hex bytes, or multicast.
    #[error("bad MAC address `{0}`: write six hex bytes, 00:00:00:00:00:01, not multicast")]
    BadMac(String),
    /// A link endpoint that is not `node` or `node:iface`.
    #[error("bad link endpoint `{0}`: write `h1:eth0` or `s1`")]
    BadEndpoint(String),
    /// A link with the wrong number of endpoints.
    #[error("a link has exactly two endpoints, found {0}")]
    EndpointCount(usize),
    /// A link whose two ends are the same node.
    #[error("both ends of the link are on `{0}`")]
    SelfLink(String),
    /// A bad sysctl name or value.
    #[error("bad sysctl `{0}`: {1}")]
    BadSysctl(String, String),
    /// An iptables rule line we cannot turn into a batch.
    #[error("bad iptables rule `{rule}`: {reason}")]
    BadRule {
        /// The rule as written.
        rule: String,
        /// Why.
        reason: String,
    },
    /// An alias that clashes with a node or is reused.
    #[error("alias `{0}` clashes with a node or another alias")]
    BadAlias(String),
    /// The topology has nothing in it.
    #[error("the topology has no hosts")]
    Empty,
}
