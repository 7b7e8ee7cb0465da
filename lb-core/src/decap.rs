//! The agent's side of the UDP encapsulation, pure: which inner packets it may re-inject.
//!
//! An inner packet is written back into the backend's kernel only if it is a whole IPv4 packet
//! to the VIP, so the agent is not an open relay.

use std::fmt;
use std::net::Ipv4Addr;

/// Why an inner packet was not re-injected; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refused {
    /// Shorter than an IPv4 header, not version 4, or a header length below 20.
    NotIpv4,
    /// The IPv4 total length is below the header length or differs from the datagram's.
    BadLength,
    /// The destination is not the VIP.
    NotForVip,
}

impl Refused {
    /// The counter's name (`not_ipv4`, `bad_length`, `not_for_vip`).
    pub fn name(self) -> &'static str {
        match self {
            Refused::NotIpv4 => "not_ipv4",
            Refused::BadLength => "bad_length",
            Refused::NotForVip => "not_for_vip",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that `p`, the payload of an encapsulation datagram, is a whole IPv4 packet to `vip`.
pub fn check_inner(p: &[u8], vip: Ipv4Addr) -> Result<(), Refused> {
    if p.len() < 20 || p[0] >> 4 != 4 || usize::from(p[0] & 0x0f) * 4 < 20 {
        return Err(Refused::NotIpv4);
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total < usize::from(p[0] & 0x0f) * 4 || total != p.len() {
        return Err(Refused::BadLength);
    }
    if Ipv4Addr::new(p[16], p[17], p[18], p[19]) != vip {
        return Err(Refused::NotForVip);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_packet_checks() {
        let vip = Ipv4Addr::new(10, 0, 0, 50);
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[16..20].copy_from_slice(&vip.octets());
        assert_eq!(check_inner(&p, vip), Ok(()));
        assert_eq!(check_inner(&p[..27], vip), Err(Refused::BadLength));
        assert_eq!(
            check_inner(&p, Ipv4Addr::new(10, 0, 0, 51)),
            Err(Refused::NotForVip)
        );
        p[0] = 0x65;
        assert_eq!(check_inner(&p, vip), Err(Refused::NotIpv4));
        assert_eq!(check_inner(b"SANITY abc", vip), Err(Refused::NotIpv4));
    }
}
