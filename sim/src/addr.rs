//! Addresses: [`MacAddr`] and [`Ipv4Net`] (an interface address with its prefix length).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`, the unknown target of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Whether the group bit is set (broadcast and multicast).
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Mininet's `--mac` convention: host `n` gets `00:00:00:00:00:nn` (big-endian `n`).
    pub const fn from_index(n: u64) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A text that is not an address of the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {expected}")]
pub struct AddrParseError {
    /// The text given.
    pub text: String,
    /// What was expected, e.g. `a MAC address like 00:00:00:00:00:01`.
    pub expected: &'static str,
}

impl FromStr for MacAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<MacAddr, AddrParseError> {
        let err = || AddrParseError {
            text: s.to_string(),
            expected: "a MAC address like 00:00:00:00:00:01",
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(err()),
        }
    }
}

/// An IPv4 address with a prefix length, as `ip addr add 10.0.0.1/24` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// `0.0.0.0/0`, the default route's prefix.
    pub const DEFAULT: Ipv4Net = Ipv4Net {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    };

    /// `addr/prefix_len`; `None` when `prefix_len` is over 32.
    pub const fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Net> {
        if prefix_len > 32 {
            None
        } else {
            Some(Ipv4Net { addr, prefix_len })
        }
    }

    /// The address as given (host bits kept).
    pub const fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0 to 32.
    pub const fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    /// The netmask as a number (`/24` → `0xffff_ff00`).
    pub const fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len)
        }
    }

    /// The network: host bits cleared (`10.0.0.1/24` → `10.0.0.0/24`).
    pub fn network(self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// The directed broadcast address (`10.0.0.255` for `10.0.0.1/24`).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Ipv4Net, AddrParseError> {
        let err = || AddrParseError {
            text: s.to_string(),
            expected: "an IPv4 address with a prefix length like 10.0.0.1/24",
        };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Ipv4Net::new(addr, len).ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_mac() {
        let m: MacAddr = "00:00:00:00:00:0a".parse().expect("mac");
        assert_eq!(m, MacAddr::from_index(10));
        assert_eq!(m.to_string(), "00:00:00:00:00:0a");
        assert!("00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("00:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("0:00:00:00:00:000".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast() && !m.is_multicast());
    }

    #[test]
    fn parse_net() {
        let n: Ipv4Net = "10.0.0.7/24".parse().expect("net");
        assert_eq!(n.network().to_string(), "10.0.0.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert!(n.contains(Ipv4Addr::new(10, 0, 0, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert!(
            "0.0.0.0/0"
                .parse::<Ipv4Net>()
                .expect("default")
                .contains(Ipv4Addr::BROADCAST)
        );
        let e = "10.0.0.1/33".parse::<Ipv4Net>().expect_err("33");
        assert_eq!(e.text, "10.0.0.1/33");
        assert!("10.0.0.1".parse::<Ipv4Net>().is_err());
    }
}
