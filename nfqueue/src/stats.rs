//! [`QueueStats`]: the kernel's per-queue counters from `/proc/.../netfilter/nfnetlink_queue`.
//!
//! The file is per network namespace, and `/proc/net` is `/proc/self/net`: the namespace of
//! the process's *main* thread. A thread that entered a lab namespace with `setns` sees its
//! own namespace only through `/proc/thread-self/net`, which is what [`QueueStats::read_all`]
//! reads; so call it from the thread (or a `run_in` closure) that is in the namespace.

use crate::Error;
use std::path::{Path, PathBuf};

/// The file read by [`QueueStats::read_all`]: the calling thread's network namespace.
pub const PROC_PATH: &str = "/proc/thread-self/net/netfilter/nfnetlink_queue";

/// One queue's line of `nfnetlink_queue` (kernel `seq_show`: `%5u %6u %5u %1u %5u %5u %5u %8u %2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue number.
    pub queue_num: u16,
    /// Netlink port id of the bound socket ([`Queue::portid`](crate::Queue::portid)).
    pub portid: u32,
    /// Packets waiting for a verdict now.
    pub queue_total: u32,
    /// Copy mode (2 = `NFQNL_COPY_PACKET`).
    pub copy_mode: u8,
    /// Copy range in bytes (the kernel caps it at 65531).
    pub copy_range: u32,
    /// Packets dropped because the queue was full (`queue_len` reached, fail-open off).
    pub queue_dropped: u64,
    /// Packets dropped because the socket's receive buffer was full.
    pub user_dropped: u64,
    /// The last packet id given out.
    pub id_sequence: u32,
}

impl QueueStats {
    /// Every queue bound in the calling thread's network namespace.
    pub fn read_all() -> Result<Vec<QueueStats>, Error> {
        Self::read_all_from(Path::new(PROC_PATH))
    }

    /// Queue `num` in the calling thread's network namespace, if it is bound.
    pub fn read(num: u16) -> Result<Option<QueueStats>, Error> {
        Ok(Self::read_all()?.into_iter().find(|s| s.queue_num == num))
    }

    /// Every queue listed in `path` (e.g. `/proc/<pid>/task/<tid>/net/netfilter/nfnetlink_queue`
    /// for another thread's namespace).
    pub fn read_all_from(path: &Path) -> Result<Vec<QueueStats>, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::StatsRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Vec<QueueStats>, Error> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| parse_line(l).map_err(|message| bad(path, i + 1, l, message)))
            .collect()
    }
}

fn bad(path: &Path, line: usize, text: &str, message: String) -> Error {
    Error::StatsParse {
        path: PathBuf::from(path),
        line,
        text: text.to_string(),
        message,
    }
}

fn parse_line(line: &str) -> Result<QueueStats, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return Err(format!("{} fields, expected 9", f.len()));
    }
    fn num<T: std::str::FromStr>(f: &[&str], i: usize, name: &str) -> Result<T, String> {
        f[i].parse()
            .map_err(|_| format!("field {} ({name}) is not a number", i + 1))
    }
    Ok(QueueStats {
        queue_num: num(&f, 0, "queue_num")?,
        portid: num(&f, 1, "portid")?,
        queue_total: num(&f, 2, "queue_total")?,
        copy_mode: num(&f, 3, "copy_mode")?,
        copy_range: num(&f, 4, "copy_range")?,
        queue_dropped: num(&f, 5, "queue_dropped")?,
        user_dropped: num(&f, 6, "user_dropped")?,
        id_sequence: num(&f, 7, "id_sequence")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_kernel_lines() {
        let text = "    0 2894529812     0 2 65531     0     0       12  1\n\
                    65535   1234     3 2 65531    17     2 4294967295  1\n";
        let s = QueueStats::parse(text, Path::new("x")).unwrap();
        assert_eq!(
            s,
            [
                QueueStats {
                    queue_num: 0,
                    portid: 2_894_529_812,
                    queue_total: 0,
                    copy_mode: 2,
                    copy_range: 65531,
                    queue_dropped: 0,
                    user_dropped: 0,
                    id_sequence: 12,
                },
                QueueStats {
                    queue_num: 65535,
                    portid: 1234,
                    queue_total: 3,
                    copy_mode: 2,
                    copy_range: 65531,
                    queue_dropped: 17,
                    user_dropped: 2,
                    id_sequence: u32::MAX,
                }
            ]
        );
        assert_eq!(QueueStats::parse("", Path::new("x")).unwrap(), []);
    }

    #[test]
    fn bad_line_names_file_line_and_field() {
        let e = QueueStats::parse("0 1 0 2 65531 0 0 5 1\n0 x 0 2 1 0 0 0 1\n", Path::new("f"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "queue stats: f line 2: field 2 (portid) is not a number: \"0 x 0 2 1 0 0 0 1\""
        );
        assert!(QueueStats::parse("1 2 3", Path::new("f")).is_err());
    }
}
