//! TCP segment view, with in-place MSS clamping.

use super::checksum;
use super::field::{Field, ParseError};
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const OPTIONS: usize = 20;
    /// Option kinds and the MSS option's length.
    pub const OPT_END: u8 = 0;
    pub const OPT_NOP: u8 = 1;
    pub const OPT_MSS: u8 = 2;
    pub const OPT_MSS_LEN: u8 = 4;
}

/// The TCP flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: the sender has finished sending.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// PSH: push.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment field is significant.
    pub const ACK: u8 = 0x10;

    /// FIN set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// A connection opening: SYN without ACK.
    pub fn is_syn_only(self) -> bool {
        self.syn() && !self.ack()
    }
}

/// A view of a TCP segment (header, options and data).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

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

    /// Ensures every accessor stays in bounds: a full header and 20 ≤ data offset ≤ length.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(ParseError::TcpTruncated);
        }
        let header_len = self.header_len();
        if header_len < field::OPTIONS || header_len > len {
            return Err(ParseError::TcpBadDataOffset);
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window size.
    pub fn window(&self) -> u16 {
        self.read_u16(field::WINDOW)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The options bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The MSS option's value and its byte offset in the segment, if present and well formed.
    pub fn mss(&self) -> Option<(u16, usize)> {
        let options = self.options();
        let mut i = 0;
        while let Some(&kind) = options.get(i) {
            match kind {
                field::OPT_END => return None,
                field::OPT_NOP => i += 1,
                _ => {
                    let len = usize::from(*options.get(i + 1)?);
                    if len < 2 || i + len > options.len() {
                        return None; // malformed options: leave them alone
                    }
                    if kind == field::OPT_MSS && len == usize::from(field::OPT_MSS_LEN) {
                        let v = u16::from_be_bytes([options[i + 2], options[i + 3]]);
                        return Some((v, field::OPTIONS + i + 2));
                    }
                    i += len;
                }
            }
        }
        None
    }

    /// True if the checksum is correct for this segment between `src` and `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u16::try_from(data.len()) else {
            return false;
        };
        let sum = checksum::pseudo_header(src, dst, 6, len);
        checksum::finish(checksum::accumulate(sum, data)) == 0
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

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port, updating the checksum incrementally.
    pub fn set_src_port(&mut self, port: u16) {
        let old = self.src_port();
        self.write_u16(field::SRC_PORT, port);
        self.set_checksum(checksum::update_word(self.checksum(), old, port));
    }

    /// Sets the destination port, updating the checksum incrementally.
    pub fn set_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        self.write_u16(field::DST_PORT, port);
        self.set_checksum(checksum::update_word(self.checksum(), old, port));
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, check: u16) {
        self.write_u16(field::CHECKSUM, check);
    }

    /// Recomputes the checksum from scratch for a segment between `src` and `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
        let sum = checksum::pseudo_header(src, dst, 6, len);
        let check = checksum::finish(checksum::accumulate(sum, data));
        self.set_checksum(check);
    }

    /// Updates the checksum after an address of the pseudo header changed from `old` to `new`.
    pub fn update_addr_checksum(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let check = checksum::update_u32(self.checksum(), old.to_bits(), new.to_bits());
        self.set_checksum(check);
    }

    /// Lowers the MSS option to `max` if it is above; returns `(old, new)` when rewritten.
    ///
    /// The checksum is updated incrementally (RFC 1624), also when the option sits at an odd
    /// offset after an odd number of NOPs.
    pub fn clamp_mss(&mut self, max: u16) -> Option<(u16, u16)> {
        let (old, at) = self.mss()?;
        if old <= max {
            return None;
        }
        let old_bytes = old.to_be_bytes();
        let new_bytes = max.to_be_bytes();
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&new_bytes);
        let check = checksum::update_bytes(self.checksum(), at, &old_bytes, &new_bytes);
        self.set_checksum(check);
        Some((old, max))
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

    // SYN 40000 -> 80, options: MSS 1460, SACK permitted, NOP, window scale 7.
    static SYN_BYTES: [u8; 32] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07,
        0x00, 0x00,
    ];

    fn syn() -> Vec<u8> {
        let mut p = SYN_BYTES.to_vec();
        TcpPacket::new_unchecked(&mut p[..]).fill_checksum(SRC, DST);
        p
    }

    #[test]
    fn parse() {
        let p = syn();
        let tcp = TcpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq_number(), 1000);
        assert_eq!(tcp.header_len(), 32);
        assert!(tcp.flags().is_syn_only());
        assert_eq!(tcp.mss(), Some((1460, 22)));
        assert!(tcp.verify_checksum(SRC, DST));
    }

    #[test]
    fn truncated() {
        let p = syn();
        assert_eq!(
            TcpPacket::new_checked(&p[..19]).unwrap_err(),
            ParseError::TcpTruncated
        );
        assert_eq!(
            TcpPacket::new_checked(&p[..31]).unwrap_err(),
            ParseError::TcpBadDataOffset
        );
    }

    #[test]
    fn impossible_len() {
        let mut p = syn();
        p[12] = 0x40; // data offset 16 bytes
        assert_eq!(
            TcpPacket::new_checked(&p[..]).unwrap_err(),
            ParseError::TcpBadDataOffset
        );
    }

    #[test]
    fn clamp_mss_rewrites_and_keeps_checksum_valid() {
        let mut p = syn();
        let mut tcp = TcpPacket::new_checked(&mut p[..]).unwrap();
        assert_eq!(tcp.clamp_mss(1432), Some((1460, 1432)));
        assert_eq!(tcp.mss(), Some((1432, 22)));
        assert!(tcp.verify_checksum(SRC, DST));
        assert_eq!(tcp.clamp_mss(1432), None, "already small enough");
    }

    #[test]
    fn clamp_mss_at_odd_offset() {
        // NOP first: the MSS value lands at offset 23.
        let mut p = syn();
        p[20..32].copy_from_slice(&[
            0x01, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x01, 0x03, 0x03, 0x07, 0x00,
        ]);
        let mut tcp = TcpPacket::new_checked(&mut p[..]).unwrap();
        tcp.fill_checksum(SRC, DST);
        assert_eq!(tcp.mss(), Some((1460, 23)));
        assert_eq!(tcp.clamp_mss(1200), Some((1460, 1200)));
        assert!(tcp.verify_checksum(SRC, DST));
    }

    #[test]
    fn malformed_options_are_left_alone() {
        let mut p = syn();
        p[20..24].copy_from_slice(&[0x08, 0x00, 0x02, 0x04]); // option length 0
        let mut tcp = TcpPacket::new_checked(&mut p[..]).unwrap();
        assert_eq!(tcp.mss(), None);
        assert_eq!(tcp.clamp_mss(500), None);
        p[20..24].copy_from_slice(&[0x08, 0x40, 0x02, 0x04]); // option beyond the header
        assert_eq!(TcpPacket::new_checked(&p[..]).unwrap().mss(), None);
    }

    #[test]
    fn ports_and_addresses_keep_checksum_valid() {
        let mut p = syn();
        let mut tcp = TcpPacket::new_checked(&mut p[..]).unwrap();
        tcp.set_src_port(1234);
        tcp.set_dst_port(8080);
        let new_dst = Ipv4Addr::new(10, 9, 8, 7);
        tcp.update_addr_checksum(DST, new_dst);
        assert!(tcp.verify_checksum(SRC, new_dst));
    }
}
