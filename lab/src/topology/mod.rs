//! Topology files: the model (what the user wrote) and the parse step (TOML → model).
//!
//! A topology is a graph of names, separate from the network built from it (Mininet's idea):
//!
//! ```toml
//! aliases = { vip = "10.0.0.50" }
//! links = [["h1:eth0", "s1"], ["h2:eth0", "s1"], { endpoints = ["h3:eth0", "s1"], mtu = 1400 }]
//!
//! [switches.s1]
//!
//! [hosts.h1]
//! interfaces = { eth0 = "10.0.0.1/24" }
//! loopback = ["10.0.0.50/32"]
//! sysctl = { "net.ipv4.ip_forward" = 1 }
//! iptables = ["-A INPUT -d 10.0.0.50/32 -p tcp -j NFQUEUE --queue-num 0"]
//! ```
//!
//! Every value keeps its byte span, so the resolve step can name the line of a mistake.
//! The format reference is docs/topology-format.md.

mod builtin;
mod error;
mod model;

pub use builtin::{builtin, mininet_ip, natural_key};
pub use error::{Origin, TopologyError, TopologyErrorKind};
pub use model::{Addresses, HostSpec, LinkSpec, SwitchSpec, SysctlValue, TcSpec, Topology};

use std::path::Path;

impl Topology {
    /// Parses topology TOML; `origin` is used in error messages.
    pub fn parse(text: &str, origin: Origin) -> Result<Topology, TopologyError> {
        match toml::from_str::<Topology>(text) {
            Ok(mut t) => {
                t.origin = origin;
                Ok(t)
            }
            Err(e) => Err(TopologyError {
                line: e.span().and_then(|s| origin.line_of(s.start)),
                origin: origin.describe(),
                field: String::new(),
                kind: TopologyErrorKind::Syntax(e.message().trim().to_string()),
            }),
        }
    }

    /// Reads and parses a topology file.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let shown = path.display().to_string();
        let text = crate::input::read_text(path).map_err(|e| TopologyError {
            origin: shown.clone(),
            line: None,
            field: String::new(),
            kind: TopologyErrorKind::Read(e),
        })?;
        Self::parse(&text.clone(), Origin::File { path: shown, text })
    }

    /// Loads a topology named on the command line: a built-in spec (`single,3`) or a file.
    pub fn load(spec: &str) -> Result<Topology, TopologyError> {
        let path = Path::new(spec);
        if path.exists() || spec.ends_with(".toml") || spec.contains('/') {
            Self::from_file(path)
        } else {
            builtin(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::File {
            path: "t.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn parse_short_and_long_links() {
        let text = r#"
links = [["h1:eth0", "s1"], { endpoints = ["h2:eth0", "s1"], mtu = 1400 }]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = ["10.0.0.2/24", "10.0.1.2/24"] }
sysctl = { "net.ipv4.ip_forward" = 1, "net.ipv4.conf.all.rp_filter" = "0", x = true }
"#;
        let t = Topology::parse(text, origin(text)).unwrap();
        assert_eq!(t.links.len(), 2);
        assert_eq!(
            t.links[1].get_ref().mtu.as_ref().map(|m| *m.get_ref()),
            Some(1400)
        );
        assert_eq!(t.hosts.len(), 2);
        let h2 = &t.hosts[1];
        assert_eq!(h2.interfaces[0].to_vec().len(), 2);
        let vals: Vec<_> = h2.sysctl.values().map(|v| v.get_ref().0.clone()).collect();
        assert_eq!(vals, ["1", "0", "1"]);
    }

    #[test]
    fn syntax_error_names_line() {
        let text = "[hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\nbogus = 3\n";
        let e = Topology::parse(text, origin(text)).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("t.toml:3: "), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn unknown_link_field_names_line() {
        let text =
            "links = [\n  [\"h1\", \"s1\"],\n  { endpoints = [\"h1\", \"s1\"], speed = 10 },\n]\n";
        let e = Topology::parse(text, origin(text)).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("speed"), "{e}");
    }
}
