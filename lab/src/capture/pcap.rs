//! Writing a capture point as a pcap file that `tcpdump -r` and Wireshark read.
//!
//! One interface: LINKTYPE_ETHERNET, frames as captured. Every interface: LINKTYPE_LINUX_SLL
//! (what `tcpdump -i any` writes), whose 16-byte header keeps the direction (`In`/`Out`); the
//! Ethernet header is replaced by it, as the kernel's cooked mode does.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use etherparse::{
    ArpHardwareId, EtherType, LinuxSllHeader, LinuxSllPacketType, LinuxSllProtocolType,
};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use super::{CapturePoint, Frame, LinkType};

const ETHERNET_HEADER_LEN: usize = 14;

/// Errors of writing a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Creating the file failed.
    #[error("creating pcap {path}: {source}")]
    Create {
        /// File path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or writing failed.
    #[error("writing pcap for {point}: {source}")]
    Write {
        /// Capture point label.
        point: String,
        /// The pcap-file error.
        #[source]
        source: pcap_file::PcapError,
    },
}

/// Writes `point` as a pcap file at `path`.
pub fn write_pcap_file(point: &CapturePoint, path: &Path) -> Result<(), PcapError> {
    let file = File::create(path).map_err(|source| PcapError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = BufWriter::new(file);
    write_pcap(point, &mut w)?;
    w.flush().map_err(|source| PcapError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `point` in pcap format to `writer`.
pub fn write_pcap<W: Write>(point: &CapturePoint, writer: W) -> Result<(), PcapError> {
    let err = |source| PcapError::Write {
        point: point.label(),
        source,
    };
    let cooked = point.interface.is_none();
    let datalink = if cooked {
        DataLink::LINUX_SLL
    } else {
        match point.frames.first().map(|f| f.link) {
            Some(LinkType::RawIp) => DataLink::RAW,
            _ => DataLink::ETHERNET,
        }
    };
    let snaplen = point
        .frames
        .iter()
        .map(|f| f.data.len() + 16)
        .max()
        .unwrap_or(0)
        .max(65_535);
    let header = PcapHeader {
        datalink,
        snaplen: snaplen as u32,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(writer, header).map_err(err)?;
    let mut buf = Vec::new();
    for frame in &point.frames {
        let (data, orig_len) = if cooked {
            buf.clear();
            cook(frame, &mut buf);
            let extra = buf.len() as i64 - frame.data.len() as i64;
            (&buf[..], (i64::from(frame.orig_len) + extra).max(0) as u32)
        } else {
            (&frame.data[..], frame.orig_len)
        };
        w.write_packet(&PcapPacket::new(frame.timestamp, orig_len, data))
            .map_err(err)?;
    }
    Ok(())
}

/// Builds the LINUX_SLL form of `frame` into `out`.
fn cook(frame: &Frame, out: &mut Vec<u8>) {
    let (hatype, addr, payload) = match frame.link {
        LinkType::Ethernet if frame.data.len() >= ETHERNET_HEADER_LEN => {
            let mut src = [0u8; 8];
            src[..6].copy_from_slice(&frame.data[6..12]);
            (
                ArpHardwareId::ETHERNET,
                (6u16, src),
                &frame.data[ETHERNET_HEADER_LEN..],
            )
        }
        LinkType::Ethernet => (ArpHardwareId::ETHERNET, (0, [0; 8]), &frame.data[..0]),
        LinkType::RawIp => (ArpHardwareId::NONE, (0, [0; 8]), &frame.data[..]),
        LinkType::Other(t) => (ArpHardwareId(t), (0, [0; 8]), &frame.data[..]),
    };
    let header = LinuxSllHeader {
        packet_type: LinuxSllPacketType::try_from(u16::from(frame.packet_type.to_raw()))
            .unwrap_or(LinuxSllPacketType::HOST),
        arp_hrd_type: hatype,
        sender_address_valid_length: addr.0,
        sender_address: addr.1,
        protocol_type: LinuxSllProtocolType::EtherType(EtherType(frame.protocol)),
    };
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
}
