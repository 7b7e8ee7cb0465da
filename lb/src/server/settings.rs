//! What `lb server` runs with: the configuration file and the flags, merged and checked.

use lb_core::config::{ControlSection, ServerSection};
use lb_core::protocol::agent::Secret;
use std::net::Ipv4Addr;

/// Everything `lb server` needs, after the file and the flags are merged.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The `[server]` section with flags applied.
    pub server: ServerSection,
    /// The `[control]` section with flags applied.
    pub control: ControlSection,
    /// The shared secret, loaded from `control.secret_file`.
    pub secret: Option<Secret>,
    /// Whether the ctl socket's path was given (then a busy path is an error, not a warning).
    pub ctl_socket_given: bool,
}
