//! [`Bridge`]: a Linux learning bridge (FDB learned from source MACs, flooding, ageing; no STP).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::addr::MacAddr;
use crate::time::SimTime;

/// The kernel's default FDB ageing time (`ageing_time`, 300 s).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

/// A learning bridge's state: its ports and its forwarding database.
#[derive(Debug, Clone)]
pub struct Bridge {
    name: String,
    ports: Vec<String>,
    fdb: BTreeMap<MacAddr, FdbEntry>,
    ageing: Duration,
}

#[derive(Debug, Clone, Copy)]
struct FdbEntry {
    port: usize,
    updated: SimTime,
}

impl Bridge {
    /// A bridge with `ports` and an empty FDB whose entries expire after `ageing`.
    pub fn new(name: &str, ports: Vec<String>, ageing: Duration) -> Bridge {
        Bridge {
            name: name.to_string(),
            ports,
            fdb: BTreeMap::new(),
            ageing,
        }
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its port names, by index.
    pub fn ports(&self) -> &[String] {
        &self.ports
    }

    /// The port `mac` was last seen on, if that entry has not aged out at `now`.
    pub fn lookup(&self, mac: MacAddr, now: SimTime) -> Option<usize> {
        let e = self.fdb.get(&mac)?;
        // br_fdb's has_expired: expired once updated + ageing <= now.
        (now < e.updated.saturating_add(self.ageing)).then_some(e.port)
    }

    /// A frame from `src` to `dst` arrived on `in_port` at `now`: learns `src`, and returns
    /// the ports to send it out of (one known port, or a flood to every other port; none if
    /// the destination is behind the incoming port).
    pub fn forward(
        &mut self,
        in_port: usize,
        src: MacAddr,
        dst: MacAddr,
        now: SimTime,
    ) -> Vec<usize> {
        if !src.is_multicast() {
            self.fdb.insert(
                src,
                FdbEntry {
                    port: in_port,
                    updated: now,
                },
            );
        }
        let known = if dst.is_multicast() {
            None
        } else {
            self.lookup(dst, now)
        };
        match known {
            Some(port) if port == in_port => Vec::new(),
            Some(port) => vec![port],
            None => (0..self.ports.len()).filter(|p| *p != in_port).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br() -> Bridge {
        let ports = ["p0", "p1", "p2"].map(String::from).to_vec();
        Bridge::new("s1", ports, DEFAULT_AGEING)
    }

    const A: MacAddr = MacAddr([0, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([0, 0, 0, 0, 0, 2]);

    #[test]
    fn learns_then_forwards() {
        let mut b = br();
        let t = SimTime::ZERO;
        assert_eq!(b.forward(0, A, MacAddr::BROADCAST, t), [1, 2]);
        assert_eq!(b.forward(1, B, A, t), [0]);
        assert_eq!(b.forward(0, A, B, t), [1]);
        assert_eq!(b.forward(1, B, B, t), Vec::<usize>::new());
    }

    #[test]
    fn entries_age_out() {
        let mut b = br();
        b.forward(0, A, MacAddr::BROADCAST, SimTime::ZERO);
        let almost = SimTime::ZERO.saturating_add(DEFAULT_AGEING - Duration::from_nanos(1));
        assert_eq!(b.lookup(A, almost), Some(0));
        assert_eq!(
            b.lookup(A, SimTime::ZERO.saturating_add(DEFAULT_AGEING)),
            None
        );
        assert_eq!(b.forward(2, B, A, SimTime::from_secs(300)), [0, 1]);
    }
}
