//! [`Error`]: every failure names the operation and the queue number.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What was being done when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opening the socket and binding the queue ([`Queue::bind`](crate::Queue::bind)).
    Bind,
    /// Setting or clearing `O_NONBLOCK`.
    SetNonblocking,
    /// Receiving packets.
    Recv,
    /// A single verdict (`NFQNL_MSG_VERDICT`).
    Verdict,
    /// A batch verdict (`NFQNL_MSG_VERDICT_BATCH`).
    VerdictBatch,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Bind => "bind",
            Op::SetNonblocking => "set non-blocking on",
            Op::Recv => "recv from",
            Op::Verdict => "verdict on",
            Op::VerdictBatch => "batch verdict on",
        })
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed (socket, setsockopt, sendto, recvmmsg, fcntl).
    #[error("{op} queue {queue}: {call}: {}", errno_text(.source))]
    Os {
        /// The operation.
        op: Op,
        /// The queue number.
        queue: u16,
        /// The failing call, e.g. `socket(AF_NETLINK, NETLINK_NETFILTER)`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered a request with a netlink error.
    #[error("{op} queue {queue}: {}{}", strerror(*.errno), hint(*.op, *.errno))]
    Netlink {
        /// The operation.
        op: Op,
        /// The queue number.
        queue: u16,
        /// The positive errno the kernel returned.
        errno: i32,
    },
    /// Another netlink socket holds this queue number in this network namespace.
    ///
    /// The kernel (`nfqnl_recv_config`) answers `EPERM` when the queue belongs to another
    /// socket, and `EBUSY` when the same socket binds it twice; both land here.
    #[error(
        "bind queue {queue}: {} (queue is bound by another socket{})",
        strerror(*.errno),
        owner.map(|p| format!(", portid {p}")).unwrap_or_default()
    )]
    QueueBusy {
        /// The queue number.
        queue: u16,
        /// The errno the kernel returned (`EPERM` or `EBUSY`).
        errno: i32,
        /// Port id of the socket holding the queue, from `/proc/thread-self/net/netfilter/nfnetlink_queue`.
        owner: Option<u32>,
    },
    /// The kernel's reply did not follow the protocol (e.g. no acknowledgement).
    #[error("{op} queue {queue}: {message}")]
    Protocol {
        /// The operation.
        op: Op,
        /// The queue number.
        queue: u16,
        /// What was wrong.
        message: String,
    },
    /// `/proc/.../nfnetlink_queue` could not be read.
    #[error("queue stats: read {}: {}", .path.display(), errno_text(.source))]
    StatsRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A line of `/proc/.../nfnetlink_queue` did not have the expected nine numbers.
    #[error("queue stats: {} line {line}: {message}: {text:?}", .path.display())]
    StatsParse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } | Error::StatsRead { source, .. } => source.raw_os_error(),
            Error::Netlink { errno, .. } | Error::QueueBusy { errno, .. } => Some(*errno),
            Error::Protocol { .. } | Error::StatsParse { .. } => None,
        }
    }

    /// True for [`Error::QueueBusy`].
    pub fn is_queue_busy(&self) -> bool {
        matches!(self, Error::QueueBusy { .. })
    }
}

/// `strerror(errno)` without std's " (os error N)" suffix.
pub(crate) fn strerror(errno: i32) -> String {
    errno_text(&io::Error::from_raw_os_error(errno))
}

fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn hint(op: Op, errno: i32) -> &'static str {
    match (op, errno) {
        (Op::Bind, libc::EPERM) => " (needs CAP_NET_ADMIN in the socket's network namespace)",
        (Op::Bind, libc::EOPNOTSUPP) => {
            " (a requested flag is not supported by this kernel: conntrack needs nf_conntrack_netlink)"
        }
        (Op::Verdict | Op::VerdictBatch, libc::ENOENT) => " (no such packet id pending)",
        (Op::Verdict | Op::VerdictBatch, libc::ENODEV) => " (queue is not bound)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_names_queue_errno_and_owner() {
        let e = Error::QueueBusy {
            queue: 7,
            errno: libc::EBUSY,
            owner: Some(1234),
        };
        assert_eq!(
            e.to_string(),
            "bind queue 7: Device or resource busy (queue is bound by another socket, portid 1234)"
        );
        assert_eq!(e.errno(), Some(libc::EBUSY));
        assert!(e.is_queue_busy());
    }

    #[test]
    fn netlink_error_names_op_and_queue() {
        let e = Error::Netlink {
            op: Op::VerdictBatch,
            queue: 3,
            errno: libc::ENOENT,
        };
        assert_eq!(
            e.to_string(),
            "batch verdict on queue 3: No such file or directory (no such packet id pending)"
        );
    }

    #[test]
    fn os_error_has_no_os_error_suffix() {
        let e = Error::Os {
            op: Op::Recv,
            queue: 0,
            call: "recvmmsg",
            source: io::Error::from_raw_os_error(libc::EBADF),
        };
        assert_eq!(
            e.to_string(),
            "recv from queue 0: recvmmsg: Bad file descriptor"
        );
    }
}
