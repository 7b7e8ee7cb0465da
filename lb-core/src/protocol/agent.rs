//! The control protocol between `lb agent` and `lb server` (docs/protocol.md): Caplance's
//! line-based text over TCP :1338, plus an optional shared-secret handshake.
//!
//! Pure: lines in, typed messages out, and back. Every line is at most [`MAX_LINE`] bytes
//! including its `\n`; tokens are separated by spaces (runs of spaces and tabs are tolerated:
//! the empty tokens Caplance's `strings.Split` would make are skipped).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::net::Ipv4Addr;

/// The TCP port of the control protocol (Caplance's).
pub const CONTROL_PORT: u16 = 1338;
/// Longest accepted line, `\n` included. Caplance's longest line is ~60 bytes.
pub const MAX_LINE: usize = 512;
/// Longest backend name (Caplance keeps `[A-Za-z0-9._-]`, of any length).
pub const MAX_NAME: usize = 64;
/// Characters of a SANITY token (Caplance: 16 letters).
pub const TOKEN_LEN: usize = 16;
/// Hex characters of a nonce in the authenticated handshake.
pub const NONCE_LEN: usize = 32;

/// Caplance's agent states, as `lb ctl state` reports them on an agent (`"Active"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AgentState {
    /// Not registered (no server configured, deregistered, or between attempts).
    Unregistered,
    /// Connecting, handshake under way.
    Registering,
    /// Registered, taking new flows.
    Active,
    /// Registered, no new flows (tracked flows continue).
    Paused,
    /// Leaving.
    Deregistering,
}

impl AgentState {
    /// The state's name, as on the wire (`"Active"`).
    pub fn name(self) -> &'static str {
        match self {
            AgentState::Unregistered => "Unregistered",
            AgentState::Registering => "Registering",
            AgentState::Active => "Active",
            AgentState::Paused => "Paused",
            AgentState::Deregistering => "Deregistering",
        }
    }
}

/// A line from an agent to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMsg {
    /// `AUTH <nonce>`: the agent has a shared secret (our extension; first line).
    Auth {
        /// The agent's nonce (hex).
        nonce: String,
    },
    /// `REGISTER <name> <dataIP> [<mac>]`: join; the MAC only after `AUTH`.
    Register {
        /// Backend name.
        name: String,
        /// Where the server sends encapsulated packets.
        data_ip: Ipv4Addr,
        /// HMAC proof (authenticated handshake only).
        mac: Option<String>,
    },
    /// `SANE <token>`: the SANITY token received over the data path.
    Sane {
        /// The token.
        token: String,
    },
    /// `HEALTH <code>`: the heartbeat.
    Health {
        /// The status code (Caplance sends 200; it is not checked).
        code: String,
    },
    /// `PAUSE [name]`.
    Pause,
    /// `RESUME [name]`.
    Resume,
    /// `DEREGISTER [name]`.
    Deregister,
}

/// A line from the server to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// `CHALLENGE <nonce>`: answer to `AUTH` (our extension).
    Challenge {
        /// The server's nonce (hex).
        nonce: String,
    },
    /// `REGISTERED <name> <ip> [<mac>]`.
    Registered {
        /// Backend name as registered.
        name: String,
        /// Its data IP.
        data_ip: Ipv4Addr,
        /// The server's HMAC proof (authenticated handshake only).
        mac: Option<String>,
    },
    /// `HEALTHACK 200`.
    HealthAck,
    /// `PAUSED <name>`.
    Paused {
        /// Backend name.
        name: String,
    },
    /// `RESUMED <name>`.
    Resumed {
        /// Backend name.
        name: String,
    },
    /// `DEREGISTERED <name> <reason…>`, then the server closes.
    Deregistered {
        /// Backend name.
        name: String,
        /// Why, free text.
        reason: String,
    },
    /// `INVALID <reason…>`: Caplance's error line.
    Invalid {
        /// What was wrong, free text.
        reason: String,
    },
}

/// Why a line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The line is empty.
    #[error("empty line")]
    Empty,
    /// Bytes that are not printable ASCII.
    #[error("line is not printable ASCII text")]
    NotText,
    /// The first token is no verb of the protocol.
    #[error("first token of message ({0}) is not an option")]
    UnknownVerb(String),
    /// A verb with missing or malformed arguments.
    #[error("{verb}: {message}")]
    BadArgs {
        /// The verb.
        verb: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn bad(verb: &'static str, message: impl Into<String>) -> ProtoError {
    ProtoError::BadArgs {
        verb,
        message: message.into(),
    }
}

/// The printable-ASCII tokens of `line` (its `\r\n` or `\n` already removed).
fn tokens(line: &str) -> Result<Vec<&str>, ProtoError> {
    if !line
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
    {
        return Err(ProtoError::NotText);
    }
    let t: Vec<&str> = line.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
    if t.is_empty() {
        return Err(ProtoError::Empty);
    }
    Ok(t)
}

/// True for a name the server accepts: 1..=64 of `[A-Za-z0-9._-]` (Caplance's alphabet).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn hex_token(verb: &'static str, what: &str, t: &str, len: usize) -> Result<String, ProtoError> {
    if t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(bad(verb, format!("{what} must be {len} hex digits")))
    }
}

/// A line without its line ending.
pub fn trim_eol(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

impl AgentMsg {
    /// Parses one agent line (without `\n`).
    pub fn parse(line: &str) -> Result<AgentMsg, ProtoError> {
        let t = tokens(trim_eol(line))?;
        match t[0] {
            "AUTH" => match t.len() {
                2 => Ok(AgentMsg::Auth {
                    nonce: hex_token("AUTH", "nonce", t[1], NONCE_LEN)?,
                }),
                _ => Err(bad("AUTH", "want AUTH <nonce>")),
            },
            "REGISTER" => {
                if !(3..=4).contains(&t.len()) {
                    return Err(bad("REGISTER", "want REGISTER <name> <dataIP>"));
                }
                if !valid_name(t[1]) {
                    return Err(bad(
                        "REGISTER",
                        format!("name must be 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -"),
                    ));
                }
                let data_ip = t[2]
                    .parse()
                    .map_err(|_| bad("REGISTER", "ip not parseable"))?;
                let mac = t
                    .get(3)
                    .map(|m| hex_token("REGISTER", "mac", m, 64))
                    .transpose()?;
                Ok(AgentMsg::Register {
                    name: t[1].to_string(),
                    data_ip,
                    mac,
                })
            }
            "SANE" => match t.len() {
                2 if t[1].len() <= 64 => Ok(AgentMsg::Sane {
                    token: t[1].to_string(),
                }),
                _ => Err(bad("SANE", "want SANE <token>")),
            },
            "HEALTH" => match t.get(1) {
                Some(code) if code.len() <= 8 => Ok(AgentMsg::Health {
                    code: code.to_string(),
                }),
                _ => Err(bad("HEALTH", "no status code in health check")),
            },
            "PAUSE" => Ok(AgentMsg::Pause),
            "RESUME" => Ok(AgentMsg::Resume),
            "DEREGISTER" => Ok(AgentMsg::Deregister),
            other => Err(ProtoError::UnknownVerb(shorten(other))),
        }
    }
}

/// At most 32 characters of a token, for error lines.
fn shorten(t: &str) -> String {
    match t.char_indices().nth(32) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

impl fmt::Display for AgentMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentMsg::Auth { nonce } => write!(f, "AUTH {nonce}"),
            AgentMsg::Register {
                name,
                data_ip,
                mac: None,
            } => write!(f, "REGISTER {name} {data_ip}"),
            AgentMsg::Register {
                name,
                data_ip,
                mac: Some(m),
            } => write!(f, "REGISTER {name} {data_ip} {m}"),
            AgentMsg::Sane { token } => write!(f, "SANE {token}"),
            AgentMsg::Health { code } => write!(f, "HEALTH {code}"),
            AgentMsg::Pause => f.write_str("PAUSE"),
            AgentMsg::Resume => f.write_str("RESUME"),
            AgentMsg::Deregister => f.write_str("DEREGISTER"),
        }
    }
}

impl ServerMsg {
    /// Parses one server line (without `\n`).
    pub fn parse(line: &str) -> Result<ServerMsg, ProtoError> {
        let line = trim_eol(line);
        let t = tokens(line)?;
        let rest = |n: usize| t[n.min(t.len())..].join(" ");
        match t[0] {
            "CHALLENGE" => match t.len() {
                2 => Ok(ServerMsg::Challenge {
                    nonce: hex_token("CHALLENGE", "nonce", t[1], NONCE_LEN)?,
                }),
                _ => Err(bad("CHALLENGE", "want CHALLENGE <nonce>")),
            },
            "REGISTERED" => {
                if t.len() < 3 {
                    return Err(bad("REGISTERED", "want REGISTERED <name> <ip>"));
                }
                Ok(ServerMsg::Registered {
                    name: t[1].to_string(),
                    data_ip: t[2].parse().map_err(|_| bad("REGISTERED", "bad ip"))?,
                    mac: t.get(3).map(|m| m.to_ascii_lowercase()),
                })
            }
            "HEALTHACK" => Ok(ServerMsg::HealthAck),
            "PAUSED" => Ok(ServerMsg::Paused { name: rest(1) }),
            "RESUMED" => Ok(ServerMsg::Resumed { name: rest(1) }),
            "DEREGISTERED" => Ok(ServerMsg::Deregistered {
                name: t.get(1).unwrap_or(&"").to_string(),
                reason: rest(2),
            }),
            "INVALID" => Ok(ServerMsg::Invalid { reason: rest(1) }),
            other => Err(ProtoError::UnknownVerb(shorten(other))),
        }
    }
}

impl fmt::Display for ServerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerMsg::Challenge { nonce } => write!(f, "CHALLENGE {nonce}"),
            ServerMsg::Registered {
                name,
                data_ip,
                mac: None,
            } => write!(f, "REGISTERED {name} {data_ip}"),
            ServerMsg::Registered {
                name,
                data_ip,
                mac: Some(m),
            } => write!(f, "REGISTERED {name} {data_ip} {m}"),
            ServerMsg::HealthAck => f.write_str("HEALTHACK 200"),
            ServerMsg::Paused { name } => write!(f, "PAUSED {name}"),
            ServerMsg::Resumed { name } => write!(f, "RESUMED {name}"),
            ServerMsg::Deregistered { name, reason } => write!(f, "DEREGISTERED {name} {reason}"),
            ServerMsg::Invalid { reason } => write!(f, "INVALID {reason}"),
        }
    }
}

/// The SANITY datagram the server sends to `dataIP:1337`: `SANITY <token>` (no newline).
pub fn sanity_datagram(token: &str) -> Vec<u8> {
    format!("SANITY {token}").into_bytes()
}

/// The token of a SANITY datagram, if `payload` is one. An IPv4 packet starts with 0x4_, `S`
/// is 0x53: the two cannot be confused.
pub fn parse_sanity(payload: &[u8]) -> Option<&str> {
    let rest = payload.strip_prefix(b"SANITY ")?;
    let token = std::str::from_utf8(rest)
        .ok()?
        .trim_end_matches(['\n', '\r']);
    (!token.is_empty() && token.len() <= 64 && token.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(token)
}

/// A SANITY token from 16 random bytes: 16 letters `A`..=`Z` (Caplance draws from `A`..`Y`).
pub fn token_from(random: [u8; TOKEN_LEN]) -> String {
    random.iter().map(|b| char::from(b'A' + b % 26)).collect()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The shared secret of the authenticated handshake.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Fewer than 16 bytes after trimming.
    #[error(
        "the secret is {0} bytes long; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort(usize),
}

impl Secret {
    /// The secret from a file's contents (surrounding whitespace trimmed; ≥ 16 bytes).
    pub fn new(text: &[u8]) -> Result<Secret, SecretError> {
        let t = text.trim_ascii();
        if t.len() < 16 {
            return Err(SecretError::TooShort(t.len()));
        }
        Ok(Secret(t.to_vec()))
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"\n");
        }
        hex(&m.finalize().into_bytes())
    }

    /// The agent's proof in `REGISTER <name> <ip> <mac>`.
    pub fn register_mac(
        &self,
        agent_nonce: &str,
        server_nonce: &str,
        name: &str,
        ip: Ipv4Addr,
    ) -> String {
        self.mac(&[
            "lb-register",
            agent_nonce,
            server_nonce,
            name,
            &ip.to_string(),
        ])
    }

    /// The server's proof in `REGISTERED <name> <ip> <mac>`.
    pub fn registered_mac(
        &self,
        agent_nonce: &str,
        server_nonce: &str,
        name: &str,
        ip: Ipv4Addr,
    ) -> String {
        self.mac(&[
            "lb-registered",
            agent_nonce,
            server_nonce,
            name,
            &ip.to_string(),
        ])
    }
}

/// Compares two MACs in time independent of where they differ.
pub fn mac_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn parse_caplance_agent_lines() {
        assert_eq!(
            AgentMsg::parse("REGISTER h2 10.0.0.2\n"),
            Ok(AgentMsg::Register {
                name: "h2".into(),
                data_ip: IP,
                mac: None
            })
        );
        assert_eq!(
            AgentMsg::parse("SANE ABCDEFGHIJKLMNOP\r\n"),
            Ok(AgentMsg::Sane {
                token: "ABCDEFGHIJKLMNOP".into()
            })
        );
        assert_eq!(
            AgentMsg::parse("HEALTH 200"),
            Ok(AgentMsg::Health { code: "200".into() })
        );
        // Caplance's agent names itself in PAUSE/RESUME/DEREGISTER; the server ignores it.
        assert_eq!(AgentMsg::parse("PAUSE h2"), Ok(AgentMsg::Pause));
        assert_eq!(AgentMsg::parse("RESUME h2"), Ok(AgentMsg::Resume));
        assert_eq!(AgentMsg::parse("DEREGISTER h2"), Ok(AgentMsg::Deregister));
    }

    #[test]
    fn malformed_agent_lines() {
        assert_eq!(AgentMsg::parse(""), Err(ProtoError::Empty));
        assert_eq!(AgentMsg::parse("   "), Err(ProtoError::Empty));
        assert_eq!(
            AgentMsg::parse("HELLO"),
            Err(ProtoError::UnknownVerb("HELLO".into()))
        );
        assert_eq!(AgentMsg::parse("REG\u{1}ISTER"), Err(ProtoError::NotText));
        assert_eq!(AgentMsg::parse("\u{e9}t\u{e9}"), Err(ProtoError::NotText));
        assert!(matches!(
            AgentMsg::parse("REGISTER h2"),
            Err(ProtoError::BadArgs { .. })
        ));
        assert!(matches!(
            AgentMsg::parse("REGISTER h2 10.0.0.300"),
            Err(ProtoError::BadArgs { .. })
        ));
        assert!(matches!(
            AgentMsg::parse("REGISTER h/2 10.0.0.2"),
            Err(ProtoError::BadArgs { .. })
        ));
        assert!(matches!(
            AgentMsg::parse("HEALTH"),
            Err(ProtoError::BadArgs { .. })
        ));
        assert!(matches!(
            AgentMsg::parse("AUTH xyz"),
            Err(ProtoError::BadArgs { .. })
        ));
        let long = "X".repeat(100);
        match AgentMsg::parse(&long) {
            Err(ProtoError::UnknownVerb(v)) => assert!(v.chars().count() <= 33, "{v}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_lines_round_trip() {
        for m in [
            ServerMsg::Challenge {
                nonce: "0".repeat(32),
            },
            ServerMsg::Registered {
                name: "h2".into(),
                data_ip: IP,
                mac: None,
            },
            ServerMsg::HealthAck,
            ServerMsg::Paused { name: "h2".into() },
            ServerMsg::Resumed { name: "h2".into() },
            ServerMsg::Deregistered {
                name: "h2".into(),
                reason: "health check timeout ran out".into(),
            },
            ServerMsg::Invalid {
                reason: "registration failed".into(),
            },
        ] {
            assert_eq!(ServerMsg::parse(&m.to_string()), Ok(m.clone()), "{m}");
        }
        assert_eq!(ServerMsg::HealthAck.to_string(), "HEALTHACK 200");
    }

    #[test]
    fn sanity_datagrams() {
        let t = token_from([0, 1, 25, 26, 51, 255, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t.bytes().all(|b| b.is_ascii_uppercase()));
        let d = sanity_datagram(&t);
        assert_eq!(parse_sanity(&d), Some(t.as_str()));
        assert_eq!(parse_sanity(b"SANITY "), None);
        assert_eq!(parse_sanity(b"SANITY a b"), None);
        assert_eq!(parse_sanity(&[0x45, 0, 0, 20]), None);
    }

    #[test]
    fn macs_bind_every_field() {
        let s = Secret::new(b"  correct horse battery staple\n").unwrap();
        let m = s.register_mac("aa", "bb", "h2", IP);
        assert_eq!(m.len(), 64);
        assert!(mac_eq(&m, &s.register_mac("aa", "bb", "h2", IP)));
        assert!(!mac_eq(&m, &s.register_mac("ab", "bb", "h2", IP)));
        assert!(!mac_eq(&m, &s.register_mac("aa", "bc", "h2", IP)));
        assert!(!mac_eq(&m, &s.register_mac("aa", "bb", "h3", IP)));
        assert!(!mac_eq(
            &m,
            &s.register_mac("aa", "bb", "h2", Ipv4Addr::new(10, 0, 0, 3))
        ));
        assert!(!mac_eq(&m, &s.registered_mac("aa", "bb", "h2", IP)));
        let other = Secret::new(b"another secret of 16+ bytes").unwrap();
        assert!(!mac_eq(&m, &other.register_mac("aa", "bb", "h2", IP)));
        assert_eq!(Secret::new(b"short").unwrap_err(), SecretError::TooShort(5));
    }
}
