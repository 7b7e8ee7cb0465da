//! [`TraceOptions`]: what a trace shows and in which [`Ordering`].

/// The UDP port of the balancer's encapsulation (Caplance's agent port).
pub const ENCAP_PORT: u16 = 1337;

/// The order of lines within a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// As captured. The default: in the lab's topologies the races that matter decide the
    /// outcome, so a different order is a different run and should fail the snapshot.
    #[default]
    Captured,
    /// Each run of consecutive received packets (nothing sent by the capture point between
    /// them) sorted by its text. Opt-in, for traffic whose arrival order is irrelevant.
    SortArrivals,
}

/// What a trace shows.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Show ARP (filtered by default: its timing varies).
    pub arp: bool,
    /// Show IPv6, neighbour discovery included (filtered by default).
    pub ipv6: bool,
    /// Show IGMP (filtered by default: membership reports go out at random times, up to a
    /// second apart, whenever a group is joined).
    pub igmp: bool,
    /// Show frames of other EtherTypes (LLDP, …).
    pub other_ethertypes: bool,
    /// Prefix lines with `In`/`Out` (and the interface for captures on every interface).
    pub direction: bool,
    /// Show TCP windows (they vary with kernel and memory: off by default).
    pub window: bool,
    /// Show TCP option kinds, without values (`options [mss,sackOK,TS,nop,wscale]`).
    pub tcp_options: bool,
    /// UDP destination ports whose payload is a whole IP packet, shown decoded.
    pub encap_ports: Vec<u16>,
    /// Line order within a section.
    pub ordering: Ordering,
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self {
            arp: false,
            ipv6: false,
            igmp: false,
            other_ethertypes: false,
            direction: false,
            window: false,
            tcp_options: false,
            encap_ports: vec![ENCAP_PORT],
            ordering: Ordering::Captured,
        }
    }
}
