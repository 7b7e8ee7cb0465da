//! Conntrack counters from `/proc/net/stat/nf_conntrack`, read inside a host's namespace.
//!
//! The file has a header line of column names and one line of hex numbers per CPU. Every
//! column but `entries` (a global count, repeated on each line) is summed over the CPUs, which
//! is what `conntrack -S` shows per CPU. Column names differ between kernels; they are mapped
//! to `conntrack -S`'s names:
//!
//! | header (6.18) | older headers | counter |
//! |---|---|---|
//! | `clashres` | `searched` | `clash_resolve` |
//! | `chainlength` | `delete_list` | `chaintoolong` |
//! | `icmp_error` | | `icmp_error` |
//!
//! `/proc/net` is the *process's* network namespace (its main thread's). A thread that
//! entered a lab namespace with `setns` must read `/proc/thread-self/net/...` instead, which
//! [`read_counters`] does.

use crate::backend::Counters;

/// Where a thread reads its own namespace's counters.
pub const STAT_PATH: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// Why the counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The stat file is missing: conntrack is not loaded.
    #[error(
        "{STAT_PATH} does not exist: the kernel has no conntrack loaded (modprobe nf_conntrack)"
    )]
    NotLoaded,
    /// Another read error.
    #[error("{STAT_PATH}: {0}")]
    Io(std::io::Error),
    /// The file does not look as expected.
    #[error("{STAT_PATH}: unexpected format: {0}")]
    Format(String),
}

/// The counter name of a header column.
fn counter_name(header: &str) -> &str {
    match header {
        "clashres" | "searched" => "clash_resolve",
        "chainlength" | "delete_list" => "chaintoolong",
        other => other,
    }
}

/// Parses the stat file's text.
pub fn parse_counters(text: &str) -> Result<Counters, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split_whitespace()
        .collect();
    if header.is_empty() {
        return Err("no header".into());
    }
    let mut out = Counters::new();
    for h in &header {
        out.insert(counter_name(h).to_string(), 0);
    }
    let mut cpus = 0;
    for line in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(format!(
                "a line has {} values for {} columns",
                values.len(),
                header.len()
            ));
        }
        for (h, v) in header.iter().zip(values) {
            let n = u64::from_str_radix(v, 16).map_err(|_| format!("`{v}` is not hex"))?;
            let slot = out.entry(counter_name(h).to_string()).or_insert(0);
            if *h == "entries" {
                *slot = (*slot).max(n);
            } else {
                *slot += n;
            }
        }
        cpus += 1;
    }
    if cpus == 0 {
        return Err("no per-CPU lines".into());
    }
    Ok(out)
}

/// Reads the counters of the calling thread's network namespace.
pub fn read_counters() -> Result<Counters, ConntrackError> {
    let text = match std::fs::read_to_string(STAT_PATH) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConntrackError::NotLoaded);
        }
        Err(e) => return Err(ConntrackError::Io(e)),
    };
    parse_counters(&text).map_err(ConntrackError::Format)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000003  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
00000003  00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000000 00000001 00000000 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn sums_cpus_and_names_columns() {
        let c = parse_counters(SAMPLE).unwrap();
        assert_eq!(c["entries"], 3, "entries is global, not summed");
        assert_eq!(c["clash_resolve"], 1);
        assert_eq!(c["insert"], 12);
        assert_eq!(c["drop"], 1);
        assert_eq!(c["chaintoolong"], 0);
        assert_eq!(c.len(), 17);
    }

    #[test]
    fn older_header_maps_searched() {
        let c = parse_counters("entries searched found\n00000001 00000002 00000003\n").unwrap();
        assert_eq!(c["clash_resolve"], 2);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_counters("").is_err());
        assert!(parse_counters("entries\n").is_err());
        assert!(parse_counters("entries found\n1\n").is_err());
        assert!(parse_counters("entries\nzz\n").is_err());
    }
}
