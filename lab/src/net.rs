//! Small address types shared by the topology and the runtime.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with its prefix length, as written in `10.0.0.1/24`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    /// The interface address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// The network mask of this prefix.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Why this cannot be a host's interface address: the subnet's network or broadcast
    /// address (prefixes up to /30; a /31 has no such addresses, RFC 3021, and a /32 is one host).
    pub fn host_address_problem(&self) -> Option<String> {
        if self.prefix > 30 {
            return None;
        }
        let net = Ipv4Cidr {
            addr: self.network(),
            prefix: self.prefix,
        };
        if self.addr == self.network() {
            Some(format!(
                "{} is the network address of {net}: give the host an address inside it",
                self.addr
            ))
        } else if self.addr == self.broadcast() {
            Some(format!(
                "{} is the broadcast address of {net}: give the host an address inside it",
                self.addr
            ))
        } else {
            None
        }
    }

    /// True when `ip` lies inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("`{0}` has no prefix length (write it as ADDRESS/PREFIX, e.g. 10.0.0.1/24)")]
    MissingPrefix(String),
    /// The address part is not an IPv4 address.
    #[error("`{0}` is not an IPv4 address")]
    BadAddress(String),
    /// The prefix part is not 0..=32.
    #[error("prefix length `{0}` is not a number from 0 to 32")]
    BadPrefix(String),
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(s.to_string()))?;
        let addr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        let prefix = match prefix.parse::<u8>() {
            Ok(p) if p <= 32 => p,
            _ => return Err(CidrError::BadPrefix(prefix.to_string())),
        };
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let c: Ipv4Cidr = "10.0.0.7/24".parse().unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(c.to_string(), "10.0.0.7/24");
        let host = |s: &str| s.parse::<Ipv4Cidr>().unwrap().host_address_problem();
        assert!(
            host("10.0.0.0/24")
                .unwrap()
                .contains("network address of 10.0.0.0/24")
        );
        assert!(
            host("10.0.0.255/24")
                .unwrap()
                .contains("broadcast address of 10.0.0.0/24")
        );
        assert_eq!(host("10.0.0.1/24"), None);
        assert_eq!(host("10.0.0.0/31"), None);
        assert_eq!(host("10.0.0.7/32"), None);
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            "10.0.0.1".parse::<Ipv4Cidr>(),
            Err(CidrError::MissingPrefix(_))
        ));
        assert!(matches!(
            "10.0.0/24".parse::<Ipv4Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.1/33".parse::<Ipv4Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
    }
}
