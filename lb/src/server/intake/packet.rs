//! The AF_PACKET intake: a packet socket sees a copy of every frame to the VIP, no rule.

use crate::server::datapath::DataPath;
use crate::sys::now;
use crate::sys::sock::{PacketSocket, RecvSlots};
use anyhow::{Context, Result};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Receives frames from `sock` in batches of `batch` and hands them to `path` until `stop`.
pub fn packet_loop(
    sock: PacketSocket,
    mut path: DataPath,
    batch: usize,
    stop: &AtomicBool,
) -> Result<DataPath> {
    let mut slots = RecvSlots::with_auxdata(batch, 2048);
    let mut dispositions = Vec::with_capacity(batch);
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        if !path.wait(fd, Duration::from_millis(200))? {
            continue;
        }
        let n = slots.recv(fd).context("receive from the packet socket")?;
        if n == 0 {
            continue;
        }
        let t = now();
        path.expire_if_due(t);
        let (packets, csum): (Vec<&[u8]>, Vec<bool>) = slots.packets().unzip();
        // The packet socket sees a copy: the kernel has the original whatever we say.
        dispositions.clear();
        path.handle_batch(t, &packets, &csum, &mut dispositions);
        path.flush();
    }
    Ok(path)
}
