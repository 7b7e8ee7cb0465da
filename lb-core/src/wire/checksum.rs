//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::Ipv4Addr;

/// Adds `data` to a running one's-complement sum (big-endian 16-bit words, odd tail padded).
pub fn accumulate(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for word in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([word[0], word[1]])));
        // Fold early so that even a 64 KiB buffer cannot overflow the accumulator.
        if sum & 0x8000_0000 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum to 16 bits and complements it: the value to store in a header.
pub fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checksum of `data` alone (e.g. an IPv4 header whose checksum field is zero).
pub fn checksum(data: &[u8]) -> u16 {
    finish(accumulate(0, data))
}

/// Running sum of the TCP/UDP pseudo header.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum + u32::from(protocol) + u32::from(length)
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changed.
pub fn update_word(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    finish(sum)
}

/// The checksum after a 32-bit value (e.g. an address) of the covered data changed.
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let check = update_word(check, (old >> 16) as u16, (new >> 16) as u16);
    update_word(check, old as u16, new as u16)
}

/// Running sum of `data` placed at byte `offset` of the covered data (the offset may be odd).
pub fn accumulate_at(sum: u32, offset: usize, data: &[u8]) -> u32 {
    match data.split_first() {
        // A byte at an odd offset is the low half of its 16-bit word.
        Some((first, rest)) if offset % 2 == 1 => accumulate(sum + u32::from(*first), rest),
        _ => accumulate(sum, data),
    }
}

/// The checksum after `old` bytes became `new` at byte `offset` of the covered data.
///
/// `old` and `new` have the same length; `offset` may be odd.
pub fn update_bytes(check: u16, offset: usize, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let old_sum = !finish(accumulate_at(0, offset, old));
    let new_sum = !finish(accumulate_at(0, offset, new));
    finish(u32::from(!check) + u32::from(!old_sum) + u32::from(new_sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3 example: the folded sum of these words is 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length() {
        assert_eq!(checksum(&[0x12, 0x34, 0x56]), !(0x1234u16 + 0x5600));
    }

    #[test]
    fn update_matches_recompute_at_every_offset() {
        let mut data: Vec<u8> = (0u8..40)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect();
        for offset in 0..30 {
            for len in 1..8 {
                let before = checksum(&data);
                let old = data[offset..offset + len].to_vec();
                let new: Vec<u8> = old.iter().map(|b| b ^ 0xa5).collect();
                data[offset..offset + len].copy_from_slice(&new);
                assert_eq!(
                    update_bytes(before, offset, &old, &new),
                    checksum(&data),
                    "offset {offset} len {len}"
                );
            }
        }
    }

    #[test]
    fn update_u32_matches_recompute() {
        let mut data = [
            0x45u8, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 50,
        ];
        let before = checksum(&data);
        data[16..20].copy_from_slice(&[192, 168, 7, 1]);
        let after = update_u32(before, 0x0a00_0032, 0xc0a8_0701);
        assert_eq!(after, checksum(&data));
    }
}
