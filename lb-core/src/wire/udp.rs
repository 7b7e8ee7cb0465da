//! UDP datagram view.

use super::checksum;
use super::field::{Field, ParseError};
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

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

    /// Ensures every accessor stays in bounds: a full header and 8 ≤ length field ≤ buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < field::PAYLOAD {
            return Err(ParseError::UdpTruncated);
        }
        let field_len = usize::from(self.len());
        if field_len < field::PAYLOAD || field_len > len {
            return Err(ParseError::UdpBadLength);
        }
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// True if the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= field::PAYLOAD
    }

    /// Checksum as stored (0 = none).
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    /// True if the checksum is absent (0) or correct for a datagram between `src` and `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        let sum = checksum::pseudo_header(src, dst, 17, self.len());
        checksum::finish(checksum::accumulate(sum, data)) == 0
    }

    fn read_u16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (the checksum is not updated: call `fill_checksum` after building).
    pub fn set_src_port(&mut self, port: u16) {
        self.write_u16(field::SRC_PORT, port);
    }

    /// Sets the destination port (the checksum is not updated).
    pub fn set_dst_port(&mut self, port: u16) {
        self.write_u16(field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, check: u16) {
        self.write_u16(field::CHECKSUM, check);
    }

    /// Computes the checksum for a datagram between `src` and `dst` (0 is sent as 0xffff).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::pseudo_header(src, dst, 17, len);
        let check = match checksum::finish(checksum::accumulate(sum, data)) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(check);
    }

    /// Updates a present checksum after an address of the pseudo header changed.
    pub fn update_addr_checksum(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        if self.checksum() != 0 {
            let check = checksum::update_u32(self.checksum(), old.to_bits(), new.to_bits());
            self.set_checksum(if check == 0 { 0xffff } else { check });
        }
    }

    /// Mutable payload, bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }

    fn write_u16(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

    // 5353 -> 53, 12 bytes, payload "ping".
    static DATAGRAM_BYTES: [u8; 12] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'p', b'i', b'n', b'g',
    ];

    #[test]
    fn parse() {
        let mut p = DATAGRAM_BYTES;
        UdpPacket::new_unchecked(&mut p[..]).fill_checksum(SRC, DST);
        let udp = UdpPacket::new_checked(&p[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (5353, 53, 12));
        assert_eq!(udp.payload(), b"ping");
        assert!(udp.verify_checksum(SRC, DST));
        // Cross-check against etherparse.
        let hdr = etherparse::UdpHeader::from_slice(&p).unwrap().0;
        assert_eq!(
            hdr.calc_checksum_ipv4_raw(SRC.octets(), DST.octets(), b"ping")
                .unwrap(),
            udp.checksum()
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM_BYTES[..7]).unwrap_err(),
            ParseError::UdpTruncated
        );
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM_BYTES[..11]).unwrap_err(),
            ParseError::UdpBadLength
        );
    }

    #[test]
    fn impossible_len() {
        let mut p = DATAGRAM_BYTES;
        p[5] = 4;
        assert_eq!(
            UdpPacket::new_checked(&p[..]).unwrap_err(),
            ParseError::UdpBadLength
        );
    }
}
