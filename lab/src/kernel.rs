//! Kernel versions and the ranges an expectation can be limited to (`kernel = ">=6.12"`).

use std::fmt;
use std::str::FromStr;

/// A kernel version: major, minor, patch (the rest of the release string is kept for display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVersion {
    /// Numeric part, e.g. (6, 18, 44).
    pub number: (u32, u32, u32),
    /// The whole release string, e.g. `6.18.44-fc-v669`.
    pub release: String,
}

impl KernelVersion {
    /// Parses a release string as `uname -r` prints it.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let release = release.trim();
        let numeric: String = release
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(KernelVersion {
            number: (major, minor, patch),
            release: release.to_string(),
        })
    }

    /// The running kernel (`uname -r`).
    pub fn running() -> KernelVersion {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self::parse(&release).unwrap_or(KernelVersion {
            number: (0, 0, 0),
            release,
        })
    }

    /// `major.minor`, as ranges are written.
    pub fn short(&self) -> String {
        format!("{}.{}", self.number.0, self.number.1)
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.release)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// A range of kernels: comparisons joined by commas, all of which must hold
/// (`">=4.18, <6.12"`). A version compared with `=` matches every release that starts with it
/// (`=3.6` matches 3.6.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRange {
    parts: Vec<(Op, Vec<u32>)>,
    text: String,
}

impl FromStr for KernelRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for raw in s.split(',') {
            let p = raw.trim();
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(t, op)| p.strip_prefix(t).map(|r| (*op, r.trim())))
            .ok_or_else(|| {
                format!("`{p}`: start each comparison with >=, >, <=, < or = (e.g. \">=6.12\")")
            })?;
            let nums: Option<Vec<u32>> = rest.split('.').map(|n| n.parse().ok()).collect();
            match nums {
                Some(v) if (1..=3).contains(&v.len()) => parts.push((op, v)),
                _ => {
                    return Err(format!(
                        "`{rest}` is not a kernel version like 6.12 or 5.4.0"
                    ));
                }
            }
        }
        Ok(KernelRange {
            parts,
            text: s.trim().to_string(),
        })
    }
}

impl KernelRange {
    /// True when `v` is inside the range.
    pub fn contains(&self, v: &KernelVersion) -> bool {
        let have = [v.number.0, v.number.1, v.number.2];
        self.parts.iter().all(|(op, want)| {
            let n = want.len();
            let cmp = have[..n].cmp(&want[..]);
            match op {
                Op::Ge => cmp.is_ge(),
                Op::Gt => cmp.is_gt(),
                Op::Le => cmp.is_le(),
                Op::Lt => cmp.is_lt(),
                Op::Eq => cmp.is_eq(),
            }
        })
    }
}

impl fmt::Display for KernelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KernelVersion {
        KernelVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_releases() {
        assert_eq!(v("6.18.44-fc-v669").number, (6, 18, 44));
        assert_eq!(v("3.6").number, (3, 6, 0));
        assert_eq!(v("5.15.0-91-generic").short(), "5.15");
        assert!(KernelVersion::parse("abc").is_none());
    }

    #[test]
    fn ranges() {
        let r: KernelRange = ">=6.12".parse().unwrap();
        assert!(r.contains(&v("6.18.44")));
        assert!(r.contains(&v("6.12.0")));
        assert!(!r.contains(&v("6.11.9")));
        let r: KernelRange = ">=4.18, <6.12".parse().unwrap();
        assert!(r.contains(&v("5.4.0")));
        assert!(!r.contains(&v("6.12.1")));
        assert!(!r.contains(&v("4.17.3")));
        let r: KernelRange = "=3.6".parse().unwrap();
        assert!(r.contains(&v("3.6.11")));
        assert!(!r.contains(&v("3.7")));
        assert!("6.12".parse::<KernelRange>().is_err());
        assert!(">=six".parse::<KernelRange>().is_err());
        assert_eq!(
            ">=6.12".parse::<KernelRange>().unwrap().to_string(),
            ">=6.12"
        );
    }
}
