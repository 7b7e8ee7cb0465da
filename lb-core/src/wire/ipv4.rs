//! IPv4 packet view.

use super::checksum;
use super::field::{Field, ParseError};
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    pub const HEADER_MIN: usize = 20;
    /// Flags and fragment offset bits of `FLG_OFF`.
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// A view of an IPv4 packet starting at its header.
///
/// The buffer may be longer than the packet (Ethernet padding); `total_len` bounds the payload.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::HEADER_MIN;

    /// Wraps a buffer without checking it (only for buffers the caller built).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures every accessor stays in bounds: a full header, IHL ≥ 5, and
    /// header length ≤ total length ≤ buffer length. The version is not checked here.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_MIN {
            return Err(ParseError::Ipv4Truncated);
        }
        let header_len = self.header_len();
        if header_len < field::HEADER_MIN || header_len > len {
            return Err(ParseError::Ipv4BadHeaderLen);
        }
        let total = usize::from(self.total_len());
        if total < header_len || total > len {
            return Err(ParseError::Ipv4BadTotalLen);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a packet we forward).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & field::FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & field::FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF) & field::OFFSET_MASK) * 8
    }

    /// True for any fragment, first or later.
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF) & (field::FLAG_MF | field::OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.read_u32(field::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.read_u32(field::DST))
    }

    /// True if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The whole packet (without trailing padding).
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.total_len())]
    }

    /// The payload (bounded by the total length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    fn read_u16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn read_u32(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the type of service byte.
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        self.write_u16(field::IDENT, ident);
    }

    /// Sets DF (and clears MF and the offset: we only build unfragmented packets).
    pub fn set_dont_frag(&mut self, df: bool) {
        self.write_u16(field::FLG_OFF, if df { field::FLAG_DF } else { 0 });
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol number.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, check: u16) {
        self.write_u16(field::CHECKSUM, check);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(self.header());
        self.set_checksum(check);
    }

    /// Sets the source address, updating the header checksum incrementally.
    ///
    /// A TCP/UDP checksum covers the address too: see `TcpPacket::update_addr_checksum`.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        let old = self.read_u32(field::SRC);
        self.write_u32(field::SRC, addr.to_bits());
        let check = checksum::update_u32(self.checksum(), old, addr.to_bits());
        self.set_checksum(check);
    }

    /// Sets the destination address, updating the header checksum incrementally.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        let old = self.read_u32(field::DST);
        self.write_u32(field::DST, addr.to_bits());
        let check = checksum::update_u32(self.checksum(), old, addr.to_bits());
        self.set_checksum(check);
    }

    /// Mutable payload (bounded by the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    fn write_u16(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    fn write_u32(&mut self, f: Field, v: u32) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.2 -> 10.0.0.50, TCP, 40 bytes, DF, ttl 64 (header only + 20 bytes of TCP).
    static HEADER_BYTES: [u8; 20] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x32,
    ];

    fn packet() -> Vec<u8> {
        let mut p = HEADER_BYTES.to_vec();
        p.resize(40, 0);
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.fill_checksum();
        p
    }

    #[test]
    fn parse() {
        let p = packet();
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 40);
        assert_eq!(ip.ident(), 0x1234);
        assert!(ip.dont_frag());
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 6);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 0, 50));
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 20);
        // Cross-check against etherparse's own checksum.
        let (hdr, _) = etherparse::Ipv4Header::from_slice(&p).unwrap();
        assert_eq!(hdr.calc_header_checksum(), ip.checksum());
    }

    #[test]
    fn truncated() {
        let p = packet();
        assert_eq!(
            Ipv4Packet::new_checked(&p[..19]).unwrap_err(),
            ParseError::Ipv4Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&p[..39]).unwrap_err(),
            ParseError::Ipv4BadTotalLen
        );
    }

    #[test]
    fn impossible_len() {
        let mut p = packet();
        p[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&p[..]).unwrap_err(),
            ParseError::Ipv4BadHeaderLen
        );
        p[0] = 0x4f; // IHL 15 = 60 bytes > 40
        assert_eq!(
            Ipv4Packet::new_checked(&p[..]).unwrap_err(),
            ParseError::Ipv4BadHeaderLen
        );
        p[0] = 0x45;
        p[3] = 10; // total length below the header
        assert_eq!(
            Ipv4Packet::new_checked(&p[..]).unwrap_err(),
            ParseError::Ipv4BadTotalLen
        );
    }

    #[test]
    fn padding_is_not_payload() {
        let mut p = packet();
        p.extend_from_slice(&[0; 6]);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.payload().len(), 20);
        assert_eq!(ip.packet().len(), 40);
    }

    #[test]
    fn fragments() {
        let mut p = packet();
        p[6] = 0x20; // MF
        assert!(Ipv4Packet::new_checked(&p[..]).unwrap().is_fragment());
        p[6] = 0x00;
        p[7] = 0x01; // offset 8
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert!(ip.is_fragment());
        assert_eq!(ip.frag_offset(), 8);
    }

    #[test]
    fn set_addrs_keeps_checksum_valid() {
        let mut p = packet();
        let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        ip.set_src_addr(Ipv4Addr::new(192, 168, 1, 77));
        ip.set_dst_addr(Ipv4Addr::new(172, 16, 254, 3));
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 1, 77));
    }
}
