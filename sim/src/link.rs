//! Links: [`Attach`], where a frame enters or leaves the wiring, and [`Link`], a veth pair.

/// A place a link end is attached to, by index into the world's hosts or bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attach {
    /// Interface `iface` of host `host`.
    Host {
        /// The host's index.
        host: usize,
        /// The interface's index in the host.
        iface: usize,
    },
    /// Port `port` of bridge `bridge`.
    Bridge {
        /// The bridge's index.
        bridge: usize,
        /// The port's index in the bridge.
        port: usize,
    },
}

/// A point-to-point link: whatever enters one end leaves the other after the latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// One end.
    pub a: Attach,
    /// The other end.
    pub b: Attach,
}

impl Link {
    /// The end opposite `from`, or `None` if `from` is not an end of this link.
    pub fn peer(&self, from: Attach) -> Option<Attach> {
        if from == self.a {
            Some(self.b)
        } else if from == self.b {
            Some(self.a)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_is_the_other_end() {
        let a = Attach::Host { host: 0, iface: 0 };
        let b = Attach::Bridge { bridge: 0, port: 1 };
        let l = Link { a, b };
        assert_eq!((l.peer(a), l.peer(b)), (Some(b), Some(a)));
        assert_eq!(l.peer(Attach::Host { host: 1, iface: 0 }), None);
    }
}
