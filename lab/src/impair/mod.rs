//! Link impairments in the lab: delay, jitter, loss, duplication, reordering and rate on any
//! link, per direction.
//!
//! The parameters and the seeded decider are the simulator's ([`sim::impair`]), so a seed means
//! one drop pattern in both. This kernel (and many CI kernels) has no `sch_netem`; the lab has
//! its own engine ([`engine`]): one process per impaired direction, which takes the direction's
//! packets through NFQUEUE at the receiving end and gives each its fate. `rate` is `tbf` on the
//! sending end. [`rules`] holds the firewall rules and tc commands; [`apply`] starts, changes
//! and stops it all for a lab.

pub mod apply;
pub mod engine;
pub mod rules;
pub mod tclink;

use serde::{Deserialize, Serialize};
pub use sim::impair::{Decider, Fate, ImpairError, Impairment, Way, stream_seed};

/// A link's impairments in the plan's terms: from its end `a` to `b`, and back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkImpairment {
    /// Packets from `a` to `b`.
    #[serde(skip_serializing_if = "Impairment::is_empty")]
    pub a_to_b: Impairment,
    /// Packets from `b` to `a`.
    #[serde(skip_serializing_if = "Impairment::is_empty")]
    pub b_to_a: Impairment,
}

impl LinkImpairment {
    /// True when neither direction changes anything.
    pub fn is_empty(&self) -> bool {
        self.a_to_b.is_empty() && self.b_to_a.is_empty()
    }

    /// One direction: `Way::Forward` is a→b.
    pub fn way(&self, way: Way) -> &Impairment {
        match way {
            Way::Forward => &self.a_to_b,
            Way::Reverse => &self.b_to_a,
        }
    }

    /// One direction, to change.
    pub fn way_mut(&mut self, way: Way) -> &mut Impairment {
        match way {
            Way::Forward => &mut self.a_to_b,
            Way::Reverse => &mut self.b_to_a,
        }
    }
}

/// A parameter in a table that could not be taken: its key path (`forward.loss`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    /// The key, with `forward.`/`reverse.` when it was inside one.
    pub key: String,
    /// What was wrong.
    pub error: ImpairError,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.error {
            ImpairError::BadValue { .. } | ImpairError::UnknownParam(_) => self.error.fmt(f),
            e if self.key.is_empty() => e.fmt(f),
            e => write!(f, "{}: {e}", self.key),
        }
    }
}

/// Reads `{ delay = "50ms", loss = 20 }` (both directions alike) or `{ forward = {…},
/// reverse = {…} }` (a direction left out is unimpaired): `(forward, reverse)` in the order the
/// link was written.
pub fn from_table(t: &toml::Table) -> Result<(Impairment, Impairment), TableError> {
    let split = t.contains_key("forward") || t.contains_key("reverse");
    if !split {
        let both = one_way(t, "")?;
        return Ok((both.clone(), both));
    }
    let mut ways = (Impairment::default(), Impairment::default());
    for (key, value) in t {
        let slot = match key.as_str() {
            "forward" => &mut ways.0,
            "reverse" => &mut ways.1,
            other => {
                return Err(TableError {
                    key: other.to_string(),
                    error: ImpairError::Conflict(
                        "with forward/reverse, every parameter goes inside one of them",
                    ),
                });
            }
        };
        let Some(inner) = value.as_table() else {
            return Err(TableError {
                key: key.clone(),
                error: ImpairError::BadValue {
                    param: key.clone(),
                    value: value.to_string(),
                    expected: "a table of impairments ({ delay = \"50ms\" })",
                },
            });
        };
        *slot = one_way(inner, &format!("{key}."))?;
    }
    Ok(ways)
}

/// One direction's `{ delay = "50ms", loss = 20 }`; `prefix` names where it sits in errors.
pub fn one_way(t: &toml::Table, prefix: &str) -> Result<Impairment, TableError> {
    let mut imp = Impairment::default();
    let at = |key: &str, error| TableError {
        key: format!("{prefix}{key}"),
        error,
    };
    for (key, value) in t {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => other.to_string(),
        };
        imp.set(key, &text).map_err(|e| at(key, e))?;
    }
    imp.validate().map_err(|e| TableError {
        key: prefix.trim_end_matches('.').to_string(),
        error: e,
    })?;
    Ok(imp)
}

/// Reads `key=value` words (`delay=50ms loss=20%`), as `lab impair` and the scenario step take
/// them. `none` alone clears.
pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<Impairment, ImpairError> {
    let mut imp = Impairment::default();
    if let [one] = words
        && one.as_ref() == "none"
    {
        return Ok(imp);
    }
    for w in words {
        let w = w.as_ref();
        let Some((k, v)) = w.split_once('=') else {
            return Err(ImpairError::BadValue {
                param: w.to_string(),
                value: String::new(),
                expected: "key=value, such as delay=50ms or loss=20%",
            });
        };
        imp.set(k, v)?;
    }
    imp.validate()?;
    Ok(imp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn one_table_impairs_both_ways_and_forward_reverse_split_them() {
        let (f, r) = from_table(&table("delay = \"50ms\"\nloss = 20")).unwrap();
        assert_eq!(f, r);
        assert_eq!(f.to_string(), "delay 50ms loss 20%");
        let (f, r) = from_table(&table("forward = { rate = \"10mbit\" }")).unwrap();
        assert_eq!(
            (f.to_string().as_str(), r.is_empty()),
            ("rate 10mbit", true)
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let e = from_table(&table("forward = { loss = \"x\" }")).unwrap_err();
        assert_eq!(e.key, "forward.loss");
        let e = from_table(&table("forward = {}\ndelay = \"1ms\"")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "delay: with forward/reverse, every parameter goes inside one of them"
        );
        let e = from_table(&table("reorder = 5")).unwrap_err();
        assert!(e.to_string().contains("reorder needs a delay"), "{e}");
        assert!(from_words(&["delay=5ms", "loss"]).is_err());
        assert!(from_words(&["none"]).unwrap().is_empty());
    }
}
