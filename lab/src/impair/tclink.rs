//! Mininet's `TCLink` parameters on the backends that are not Mininet: the lab's impairments.

use super::{Impairment, LinkImpairment};
use crate::resolve::LinkPlan;
use crate::topology::TcSpec;

/// Mininet's `TCLink` parameters (`tc = { bw, delay, jitter, loss }`) as the lab's impairment:
/// TCLink shapes and delays both ends' egress, so both ways alike: `bw` Mbit/s is the rate.
/// `max_queue_size` and `use_htb` have no equivalent here and are refused by name.
pub fn from_tclink(tc: &TcSpec) -> Result<LinkImpairment, String> {
    let mut refused = Vec::new();
    if tc.max_queue_size.is_some() {
        refused.push("max_queue_size");
    }
    if tc.use_htb.is_some() {
        refused.push("use_htb");
    }
    if !refused.is_empty() {
        return Err(format!(
            "tc {}: Mininet's htb and queue options have no equivalent here (the rate is tbf's): drop them, or use --backend mininet",
            refused.join(", ")
        ));
    }
    let mut imp = Impairment::default();
    let mut set = |k: &str, v: String| imp.set(k, &v).map_err(|e| format!("tc {e}"));
    if let Some(bw) = tc.bw {
        set("rate", format!("{bw}mbit"))?;
    }
    if let Some(d) = &tc.delay {
        set("delay", d.clone())?;
    }
    if let Some(j) = &tc.jitter {
        set("jitter", j.clone())?;
    }
    if let Some(l) = tc.loss {
        set("loss", l.to_string())?;
    }
    imp.validate().map_err(|e| format!("tc: {e}"))?;
    Ok(LinkImpairment {
        a_to_b: imp.clone(),
        b_to_a: imp,
    })
}

/// A link's impairment on the backends that do not run Mininet: `impair`, or its `tc`
/// translated ([`from_tclink`]); both on one link is refused.
pub fn of_link(l: &LinkPlan) -> Result<Option<LinkImpairment>, String> {
    match (&l.impair, &l.tc) {
        (Some(_), Some(_)) => Err(format!(
            "link {} <-> {}: both tc and impairments: write the impairments alone",
            l.a.iface, l.b.iface
        )),
        (Some(i), None) => Ok(Some(i.clone())),
        (None, Some(tc)) => from_tclink(tc)
            .map(Some)
            .map_err(|e| format!("link {} <-> {}: {e}", l.a.iface, l.b.iface)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tclink_is_both_ways_alike_and_its_htb_options_are_refused() {
        let tc = TcSpec {
            bw: Some(10.0),
            delay: Some("5ms".into()),
            ..Default::default()
        };
        let both = from_tclink(&tc).unwrap();
        assert_eq!(both.a_to_b.to_string(), "delay 5ms rate 10mbit");
        assert_eq!(both.a_to_b, both.b_to_a);
        let htb = TcSpec {
            use_htb: Some(true),
            ..tc
        };
        assert!(from_tclink(&htb).unwrap_err().starts_with("tc use_htb: "));
    }
}
