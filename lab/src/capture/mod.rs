//! Packet capture with AF_PACKET sockets, one capture point per host (and interface).
//!
//! Namespaces: [`PacketSocket::open`] (and [`Capture::start`], which calls it) must run on a
//! thread that is already inside the host's network namespace, e.g. inside
//! `netns_rs::NetNs::run`. The socket stays bound to that namespace, so [`Capture::from_socket`]
//! can read it on a thread of its own from anywhere.
//!
//! Armed: [`Capture::start`] / [`Capture::from_socket`] return only once the socket is bound
//! (from then on the kernel queues every frame, see [`PacketSocket`]) and the reader thread runs.
//! Traffic sent after they return is captured; no sleep is involved.
//!
//! Nothing is dropped silently: [`CaptureStats`] carries the kernel's PACKET_STATISTICS drop
//! count, the frames left unread when a count limit stopped the capture, the frames cut to the
//! snap length, and loopback's duplicate outgoing copies that were skipped (as libpcap does).
//!
//! Both directions are captured. On every interface (`interface: None`) a frame that the host
//! forwards from one interface to another is seen twice, once per interface and direction, as
//! `tcpdump -i any` shows it; each [`Frame`] names its interface and [`PacketType`], and the
//! ladder diagram merges such copies into one arrow.

mod error;
mod frame;
mod pcap;
mod socket;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use error::CaptureError;
pub use frame::{CapturePoint, CaptureStats, Frame, LinkType, PacketType, StopReason};
pub use pcap::{PcapError, write_pcap, write_pcap_file};
pub use socket::PacketSocket;
use socket::{Received, Waker, poll2};

/// Default snap length: whole frames, as tcpdump's default.
pub const DEFAULT_SNAPLEN: usize = 262_144;

/// Limits and names of one capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Topology host name recorded in the result.
    pub host: String,
    /// Interface name; `None` for every interface of the namespace.
    pub interface: Option<String>,
    /// Stop after this many frames.
    pub max_packets: Option<usize>,
    /// Stop after this long.
    pub max_duration: Option<Duration>,
    /// Bytes kept per frame.
    pub snaplen: usize,
    /// Also sends a copy of each frame here as soon as it is read (the live view of
    /// `lab capture`); the sender is dropped when the capture ends.
    pub live: Option<mpsc::Sender<Frame>>,
}

impl CaptureConfig {
    /// A capture of `interface` (`None`: all) on `host`, unbounded, whole frames.
    pub fn new(host: &str, interface: Option<&str>) -> Self {
        Self {
            host: host.to_string(),
            interface: interface.map(str::to_string),
            max_packets: None,
            max_duration: None,
            snaplen: DEFAULT_SNAPLEN,
            live: None,
        }
    }

    /// Stops after `n` frames.
    pub fn count(mut self, n: usize) -> Self {
        self.max_packets = Some(n);
        self
    }

    /// Stops after `d`.
    pub fn duration(mut self, d: Duration) -> Self {
        self.max_duration = Some(d);
        self
    }

    /// Sends a copy of every frame to `tx` as it is read, in capture order.
    pub fn live(mut self, tx: mpsc::Sender<Frame>) -> Self {
        self.live = Some(tx);
        self
    }
}

/// Asks a running capture to stop from anywhere (e.g. a Ctrl-C handler thread).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<Waker>);

impl StopHandle {
    /// Asks the reader to drain what is queued and stop; returns at once.
    pub fn stop(&self) {
        self.0.wake();
    }
}

/// A running capture: a reader thread that owns the socket.
#[derive(Debug)]
pub struct Capture {
    host: String,
    bounded: bool,
    waker: Arc<Waker>,
    /// Taken by `stop`/`wait`; still there in `drop`, which then stops the reader.
    thread: Option<JoinHandle<Result<CapturePoint, CaptureError>>>,
}

impl Capture {
    /// Opens a socket in the calling thread's namespace and starts reading; returns once armed.
    ///
    /// Must be called on a thread inside the host's network namespace (see the module doc).
    pub fn start(config: CaptureConfig) -> Result<Self, CaptureError> {
        let socket = PacketSocket::open(config.interface.as_deref())?;
        Self::from_socket(socket, config)
    }

    /// Starts reading a socket opened earlier (in its namespace); returns once armed.
    pub fn from_socket(socket: PacketSocket, config: CaptureConfig) -> Result<Self, CaptureError> {
        let waker = Arc::new(Waker::new().map_err(|source| CaptureError::Socket {
            op: "eventfd",
            interface: socket.interface().unwrap_or("any").to_string(),
            source,
        })?);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let host = config.host.clone();
        let bounded = config.max_packets.is_some() || config.max_duration.is_some();
        let thread_waker = Arc::clone(&waker);
        let thread = std::thread::Builder::new()
            .name(format!("capture-{host}"))
            .spawn(move || read_loop(socket, config, &thread_waker, ready_tx))
            .map_err(|source| CaptureError::Socket {
                op: "spawn",
                interface: host.clone(),
                source,
            })?;
        // The thread sends once, before its first read; an Err means it died first.
        if ready_rx.recv().is_err() {
            return Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => CaptureError::ThreadPanicked { host },
            });
        }
        Ok(Self {
            host,
            bounded,
            waker,
            thread: Some(thread),
        })
    }

    /// A handle that stops this capture from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.waker))
    }

    /// True once the reader ended (limit reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Reads what is already queued, stops, and returns the capture point.
    pub fn stop(mut self) -> Result<CapturePoint, CaptureError> {
        self.waker.wake();
        self.join()
    }

    /// Waits until the count or duration limit ends the capture.
    pub fn wait(mut self) -> Result<CapturePoint, CaptureError> {
        if !self.bounded {
            // Waiting forever would hang the caller: say so instead (drop stops the reader).
            return Err(CaptureError::Unbounded {
                host: self.host.clone(),
            });
        }
        self.join()
    }

    fn join(&mut self) -> Result<CapturePoint, CaptureError> {
        let host = self.host.clone();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| CaptureError::ThreadPanicked { host })?,
            None => Err(CaptureError::ThreadPanicked { host }),
        }
    }
}

impl Drop for Capture {
    /// A capture dropped unjoined (a panic, an early return) stops its reader, which closes
    /// the socket, so the namespace it holds can go away.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.waker.wake();
            let _ = t.join();
        }
    }
}

fn read_loop(
    socket: PacketSocket,
    config: CaptureConfig,
    waker: &Waker,
    ready: mpsc::SyncSender<()>,
) -> Result<CapturePoint, CaptureError> {
    let iface = socket.interface().unwrap_or("any").to_string();
    let err = |op: &'static str| {
        let interface = iface.clone();
        move |source| CaptureError::Socket {
            op,
            interface,
            source,
        }
    };
    let mut point = CapturePoint::new(&config.host, config.interface.as_deref());
    let deadline = config.max_duration.map(|d| Instant::now() + d);
    let full = |p: &CapturePoint| config.max_packets.is_some_and(|m| p.frames.len() >= m);
    let _ = ready.send(());
    tracing::debug!(host = %config.host, interface = %iface, "capture armed");
    let reason = 'outer: loop {
        if full(&point) {
            break StopReason::Count;
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
            break StopReason::Duration;
        }
        let (readable, stop) =
            poll2(socket.as_raw_fd(), waker.as_raw_fd(), timeout).map_err(err("poll"))?;
        if stop {
            // Drain what the kernel already queued: it was sent before stop() was called.
            drain(&socket, &config, &mut point).map_err(err("recvmsg"))?;
            break StopReason::Stopped;
        }
        if readable {
            drain(&socket, &config, &mut point).map_err(err("recvmsg"))?;
            continue 'outer;
        }
    };
    let (packets, drops) = socket.statistics().map_err(err("PACKET_STATISTICS"))?;
    let stats = &mut point.stats;
    stats.kernel_packets = packets;
    stats.kernel_drops = drops;
    stats.captured = point.frames.len() as u64;
    stats.stop_reason = reason;
    stats.unread = packets.saturating_sub(drops + stats.captured + stats.loopback_duplicates);
    if drops > 0 {
        tracing::warn!(host = %config.host, interface = %iface, drops, "kernel dropped frames");
    }
    tracing::debug!(host = %config.host, interface = %iface, ?stats, "capture ended");
    Ok(point)
}

/// Reads until the socket is empty or the count limit is reached.
fn drain(
    socket: &PacketSocket,
    config: &CaptureConfig,
    point: &mut CapturePoint,
) -> std::io::Result<()> {
    while config.max_packets.is_none_or(|m| point.frames.len() < m) {
        match socket.recv(config.snaplen)? {
            Received::WouldBlock => break,
            Received::LoopbackOutgoing => point.stats.loopback_duplicates += 1,
            Received::Frame(frame) => {
                if (frame.data.len() as u64) < u64::from(frame.orig_len) {
                    point.stats.truncated += 1;
                }
                if let Some(tx) = &config.live {
                    // A receiver that went away only stops the copies, not the capture.
                    let _ = tx.send(frame.clone());
                }
                point.frames.push(frame);
            }
        }
    }
    Ok(())
}
