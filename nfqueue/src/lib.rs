//! `nfqueue`: Linux NFQUEUE over raw netlink, with batch receive and batch verdicts.
//!
//! An `iptables ... -j NFQUEUE --queue-num N` (or nft `queue num N`) rule hands packets to the
//! user-space program that bound queue N in the same network namespace; each packet waits in
//! the kernel until the program gives it a verdict (drop, accept, ...).
//!
//! # Protocol pieces used
//! One `AF_NETLINK`/`NETLINK_NETFILTER` socket per queue, subsystem `NFNL_SUBSYS_QUEUE` (3):
//! - `NFQNL_MSG_CONFIG` (2), sent once with `NLM_F_ACK` by [`Queue::bind`]: `NFQA_CFG_CMD`
//!   `BIND`, `NFQA_CFG_PARAMS` (copy mode `PACKET` and copy range), `NFQA_CFG_QUEUE_MAXLEN`,
//!   and `NFQA_CFG_FLAGS` together with `NFQA_CFG_MASK` (the kernel refuses flags without a
//!   mask). The old per-family `PF_UNBIND`/`PF_BIND` commands are no-ops since Linux 3.8 and
//!   are not sent.
//! - `NFQNL_MSG_PACKET` (0), kernel to user: `NFQA_PACKET_HDR` (id big-endian, hw protocol,
//!   hook), `NFQA_PAYLOAD`, and the metadata attributes read into [`Packet`].
//! - `NFQNL_MSG_VERDICT` (1): `NFQA_VERDICT_HDR` (verdict, id; big-endian, not nested) for
//!   one id, optionally `NFQA_MARK` or a replacement `NFQA_PAYLOAD`.
//! - `NFQNL_MSG_VERDICT_BATCH` (3): the same header, applied to every pending id up to and
//!   including the given one.
//!
//! The byte layout lives in [`wire`], which is pure and tested byte for byte.
//!
//! # Batch design
//! [`Queue::recv`] fills a [`RecvBatch`] with one `recvmmsg(MSG_WAITFORONE)`: it blocks for
//! the first datagram, then takes whatever is already queued, up to the batch capacity, so a
//! busy queue costs one system call per batch instead of one per packet. The kernel gives ids
//! in arrival order and keeps pending packets in a list in that order, so after handling a
//! batch one [`Queue::verdict_batch`]`(batch.last_id(), v)` answers all of it. A balancer that
//! forwards packets itself and drops the originals therefore needs two system calls per batch.
//! Packets that need different verdicts take single [`Queue::verdict`]s first; the batch
//! verdict then covers only those still pending.
//!
//! Verdicts are not acknowledged (that would cost a receive per verdict); the kernel's
//! rejections (`ENOENT`, `EINVAL`) arrive as `NLMSG_ERROR` messages among the packets and are
//! counted in [`Queue::counters`]. Malformed messages are skipped and counted, never panicked
//! on.
//!
//! # Namespaces
//! The socket belongs to the network namespace of the thread that created it: call
//! [`Queue::bind`] from a thread that has entered the namespace (e.g. inside `lab`'s
//! `Lab::run_in`); the queue can then be used from any thread. [`QueueStats`] reads
//! `/proc/thread-self/net/...`, the calling thread's namespace.
//!
//! ```no_run
//! use nfqueue::{Queue, QueueConfig, RecvBatch, Verdict};
//! let mut q = Queue::bind(0, &QueueConfig::default())?;
//! let mut batch = RecvBatch::new(64);
//! loop {
//!     q.recv(&mut batch)?;
//!     for p in batch.packets() {
//!         println!("{p}");
//!     }
//!     if let Some(last) = batch.last_id() {
//!         q.verdict_batch(last, Verdict::Accept)?;
//!     }
//! }
//! # Ok::<(), nfqueue::Error>(())
//! ```

pub mod batch;
pub mod error;
pub mod queue;
pub mod stats;
mod verdict;
pub mod verdicts;
pub mod wire;

pub use batch::RecvBatch;
pub use error::{Error, Op};
pub use queue::{Queue, QueueConfig, RecvCounters};
pub use stats::QueueStats;
pub use verdict::Verdict;
pub use verdicts::Verdicts;
pub use wire::Packet;
