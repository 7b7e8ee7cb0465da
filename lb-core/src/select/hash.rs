//! A stable keyed hash of a flow: SipHash-1-3 over an explicit byte layout.
//!
//! The output depends only on the key and the bytes below, never on the process, the machine or
//! its endianness, so several balancers with the same key agree on every flow. SipHash is
//! specified (Aumasson & Bernstein 2012); this is the 1-3 variant Rust's std uses, cross-checked
//! in tests against the `siphasher` crate and, for 2-4, against the paper's test vectors.
//!
//! Byte layout (network byte order), fed to SipHash as one message:
//! - [`HashMode::FiveTuple`]: src ip (4) · dst ip (4) · src port (2) · dst port (2) · protocol (1)
//! - [`HashMode::SrcIpPort`]: src ip (4) · src port (2) — Caplance's key.

use crate::wire::FlowKey;
use serde::{Deserialize, Serialize};

/// A 128-bit SipHash key; part of the configuration, identical on every balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashKey(pub [u8; 16]);

impl HashKey {
    /// The key used when the configuration gives none.
    pub const DEFAULT: HashKey = HashKey(*b"lb maglev key v1");

    /// The two 64-bit halves (little-endian, as SipHash specifies).
    pub fn halves(&self) -> (u64, u64) {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
        ] = self.0;
        (
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        )
    }
}

impl HashKey {
    /// The key for a text shared by the balancers that must agree (`hash_key` in the
    /// configuration, `--hash-key`): two SipHash-2-4 sums of the text under fixed keys.
    pub fn from_text(text: &str) -> HashKey {
        let a = siphash24(&HashKey(*b"lb key text a v1"), text.as_bytes());
        let b = siphash24(&HashKey(*b"lb key text b v1"), text.as_bytes());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&a.to_le_bytes());
        key[8..].copy_from_slice(&b.to_le_bytes());
        HashKey(key)
    }
}

impl Default for HashKey {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which fields of the flow choose its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashMode {
    /// Source and destination address and port, and the protocol.
    #[default]
    FiveTuple,
    /// Source address and port only, like Caplance.
    SrcIpPort,
}

/// SipHash-1-3 of `msg` under `key`.
pub fn siphash13(key: &HashKey, msg: &[u8]) -> u64 {
    sip::<1, 3>(key.halves(), msg)
}

/// SipHash-2-4 of `msg` under `key` (the paper's reference variant).
pub fn siphash24(key: &HashKey, msg: &[u8]) -> u64 {
    sip::<2, 4>(key.halves(), msg)
}

/// The bytes hashed for `flow` in `mode`, and how many of the 13 are used.
pub fn flow_bytes(flow: &FlowKey, mode: HashMode) -> ([u8; 13], usize) {
    let mut b = [0u8; 13];
    b[0..4].copy_from_slice(&flow.src.octets());
    match mode {
        HashMode::FiveTuple => {
            b[4..8].copy_from_slice(&flow.dst.octets());
            b[8..10].copy_from_slice(&flow.src_port.to_be_bytes());
            b[10..12].copy_from_slice(&flow.dst_port.to_be_bytes());
            b[12] = flow.protocol.number();
            (b, 13)
        }
        HashMode::SrcIpPort => {
            b[4..6].copy_from_slice(&flow.src_port.to_be_bytes());
            (b, 6)
        }
    }
}

/// The stable hash of `flow` in `mode`.
pub fn flow_hash(key: &HashKey, flow: &FlowKey, mode: HashMode) -> u64 {
    let (bytes, len) = flow_bytes(flow, mode);
    siphash13(key, &bytes[..len])
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn sip<const C: usize, const D: usize>((k0, k1): (u64, u64), msg: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            round(v);
        }
        v[0] ^= m;
    };
    let mut blocks = msg.chunks_exact(8);
    for block in &mut blocks {
        let mut w = [0u8; 8];
        w.copy_from_slice(block);
        compress(&mut v, u64::from_le_bytes(w));
    }
    let mut last = [0u8; 8];
    let tail = blocks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // The message length modulo 256 goes in the last block's top byte.
    last[7] = msg.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;
    use proptest::prelude::*;
    use std::hash::Hasher;
    use std::net::Ipv4Addr;

    const KEY_00_0F: HashKey = HashKey([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

    // Appendix A of the SipHash paper (key 00..0f): the empty message and 00..0e.
    #[test]
    fn siphash24_paper_vectors() {
        assert_eq!(siphash24(&KEY_00_0F, &[]), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(&KEY_00_0F, &msg), 0xa129_ca61_49be_45e5);
    }

    proptest! {
        #[test]
        fn matches_siphasher_crate(msg in proptest::collection::vec(any::<u8>(), 0..80), key in any::<[u8; 16]>()) {
            let k = HashKey(key);
            let (k0, k1) = k.halves();
            let mut h13 = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
            h13.write(&msg);
            prop_assert_eq!(siphash13(&k, &msg), h13.finish());
            let mut h24 = siphasher::sip::SipHasher24::new_with_keys(k0, k1);
            h24.write(&msg);
            prop_assert_eq!(siphash24(&k, &msg), h24.finish());
        }
    }

    fn flow() -> FlowKey {
        FlowKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 50),
            src_port: 40000,
            dst_port: 80,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn flow_bytes_layout() {
        let (b, n) = flow_bytes(&flow(), HashMode::FiveTuple);
        assert_eq!(
            &b[..n],
            &[10, 0, 0, 2, 10, 0, 0, 50, 0x9c, 0x40, 0x00, 0x50, 6]
        );
        let (b, n) = flow_bytes(&flow(), HashMode::SrcIpPort);
        assert_eq!(&b[..n], &[10, 0, 0, 2, 0x9c, 0x40]);
    }

    // Pinned outputs (also computed by an independent Python SipHash-1-3). If these change, every balancer's table changes with them, so a change
    // here must be deliberate (and deployed everywhere at once).
    #[test]
    fn pinned_flow_hashes() {
        let key = HashKey::DEFAULT;
        assert_eq!(
            flow_hash(&key, &flow(), HashMode::FiveTuple),
            PINNED_FIVE_TUPLE
        );
        assert_eq!(
            flow_hash(&key, &flow(), HashMode::SrcIpPort),
            PINNED_SRC_IP_PORT
        );
        let mut udp = flow();
        udp.protocol = Protocol::Udp;
        assert_ne!(
            flow_hash(&key, &udp, HashMode::FiveTuple),
            PINNED_FIVE_TUPLE
        );
        assert_eq!(
            flow_hash(&key, &udp, HashMode::SrcIpPort),
            PINNED_SRC_IP_PORT
        );
    }

    const PINNED_FIVE_TUPLE: u64 = 0x90b477f44b8210af;
    const PINNED_SRC_IP_PORT: u64 = 0x411c3278b4cab99f;
}
