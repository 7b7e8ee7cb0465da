//! Link impairments: delay, jitter, loss, duplication, reordering and rate, and the seeded
//! [`Decider`] that gives each packet its fate. The lab's NFQUEUE engine and the simulator use
//! the same decider, so one seed means one drop pattern in both.
//!
//! The semantics are netem's (`tc-netem(8)`), so an engineer's numbers mean what they expect:
//!
//! - `loss P% [C%]`: each packet is dropped with probability P; C correlates each draw with the
//!   previous one the way netem's `get_crandom` does (`next = rnd·(1−C) + last·C`).
//! - `duplicate P% [C%]`: a packet that is not lost is delivered twice; the copy follows the
//!   original at the same time (netem re-enqueues the copy, whose own delay may differ).
//! - `delay D`, `jitter J`: each packet waits uniformly in `D−J ..= D+J` (netem's default
//!   without a distribution table); packets whose delays cross leave in the new order.
//! - `reorder P% [C%]` (needs a delay): with probability P a packet goes at once while the
//!   others wait their delay, so it overtakes them (netem's `reorder` with `gap 1`).
//! - `rate R`: the link's sending end is shaped to R (`tbf` in the lab, [`Shaper`] here).
//!
//! Draws per packet, in this order and only for what is set: loss; then (if not lost)
//! duplicate, reorder, jitter. A decider's stream is [`stream_seed`]`(seed, link, direction)`.

use crate::rng::SimRng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A probability in parts per million (`20%` is 200 000), with an optional correlation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chance {
    /// Probability, parts per million.
    pub ppm: u32,
    /// Correlation with the previous draw, parts per million.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub correlation_ppm: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Chance {
    /// True when it never happens.
    pub fn is_zero(&self) -> bool {
        self.ppm == 0
    }

    /// The probability as netem keeps it: a `u32` where `u32::MAX` is certain.
    fn scaled(ppm: u32) -> u32 {
        ((u64::from(ppm) * u64::from(u32::MAX)) / 1_000_000) as u32
    }
}

impl fmt::Display for Chance {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}%", Ppm(self.ppm))?;
        if self.correlation_ppm != 0 {
            write!(f, " {}%", Ppm(self.correlation_ppm))?;
        }
        Ok(())
    }
}

/// Parts per million shown as a percentage without trailing zeros (`200000` → `20`).
struct Ppm(u32);

impl fmt::Display for Ppm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let whole = self.0 / 10_000;
        let frac = self.0 % 10_000;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:04}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

/// A rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    /// Bits per second.
    pub bits_per_sec: u64,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let b = self.bits_per_sec;
        for (unit, n) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if b >= n && b % n == 0 {
                return write!(f, "{}{unit}", b / n);
            }
        }
        write!(f, "{b}bit")
    }
}

impl Rate {
    /// The token bucket a shaper of this rate uses, as `(burst bytes, latency)`: the bucket
    /// holds 4 ms of the rate and never less than two full frames (tbf refuses a bucket below
    /// the MTU); a packet that would wait more than the latency for tokens is dropped. The
    /// lab's `tbf` and the simulator's [`Shaper`] both take these.
    pub fn bucket(&self) -> (u32, Duration) {
        let per_4ms = self.bits_per_sec / 8 / 250;
        (
            per_4ms.clamp(3028, 16 << 20) as u32,
            Duration::from_millis(100),
        )
    }
}

/// What one direction of a link does to its packets. All zero: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Impairment {
    /// Fixed delay.
    #[serde(with = "nanos", skip_serializing_if = "Duration::is_zero")]
    pub delay: Duration,
    /// Uniform variation around the delay.
    #[serde(with = "nanos", skip_serializing_if = "Duration::is_zero")]
    pub jitter: Duration,
    /// Loss.
    #[serde(skip_serializing_if = "Chance::is_zero")]
    pub loss: Chance,
    /// Duplication.
    #[serde(skip_serializing_if = "Chance::is_zero")]
    pub duplicate: Chance,
    /// Reordering (sent at once while the others wait `delay`).
    #[serde(skip_serializing_if = "Chance::is_zero")]
    pub reorder: Chance,
    /// Rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Seed of the decider's stream; `None` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

mod nanos {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_nanos() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

/// The parameter names, in the order they are shown.
pub const PARAMS: &[&str] = &[
    "delay",
    "jitter",
    "loss",
    "duplicate",
    "reorder",
    "rate",
    "seed",
];

/// A parameter that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpairError {
    /// Not one of [`PARAMS`].
    #[error(
        "unknown impairment `{0}` (known: delay, jitter, loss, duplicate, reorder, rate, seed)"
    )]
    UnknownParam(String),
    /// The value does not parse.
    #[error("{param} = {value:?}: expected {expected}")]
    BadValue {
        /// Parameter name.
        param: String,
        /// What was written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A combination netem refuses too.
    #[error("{0}")]
    Conflict(&'static str),
}

impl Impairment {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss.is_zero()
            && self.duplicate.is_zero()
            && self.reorder.is_zero()
            && self.rate.is_none()
    }

    /// True when packets must pass through a decider (everything but the rate).
    pub fn needs_engine(&self) -> bool {
        !(self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss.is_zero()
            && self.duplicate.is_zero()
            && self.reorder.is_zero())
    }

    /// Sets one parameter from its written value: `delay`/`jitter` a duration (`50ms`,
    /// `1.5s`, `200us`), `loss`/`duplicate`/`reorder` a percentage with an optional
    /// correlation (`20%`, `20`, `0.5% 25%`), `rate` a tc rate (`10mbit`, `1gbit`, `500kbit`,
    /// `2mbps` = bytes), `seed` an integer.
    pub fn set(&mut self, param: &str, value: &str) -> Result<(), ImpairError> {
        let bad = |expected| ImpairError::BadValue {
            param: param.to_string(),
            value: value.to_string(),
            expected,
        };
        let v = value.trim();
        match param {
            "delay" => self.delay = parse_duration(v).ok_or_else(|| bad(DURATION))?,
            "jitter" => self.jitter = parse_duration(v).ok_or_else(|| bad(DURATION))?,
            "loss" => self.loss = parse_chance(v).ok_or_else(|| bad(PERCENT))?,
            "duplicate" => self.duplicate = parse_chance(v).ok_or_else(|| bad(PERCENT))?,
            "reorder" => self.reorder = parse_chance(v).ok_or_else(|| bad(PERCENT))?,
            "rate" => self.rate = Some(parse_rate(v).ok_or_else(|| bad(RATE))?),
            "seed" => self.seed = Some(v.parse().map_err(|_| bad("an integer, 0 or more"))?),
            other => return Err(ImpairError::UnknownParam(other.to_string())),
        }
        Ok(())
    }

    /// The stream of this impairment's decider on link `link` (its index in the topology),
    /// way `way`: [`stream_seed`] of its seed, 0 when it has none.
    pub fn stream(&self, link: usize, way: Way) -> u64 {
        stream_seed(self.seed.unwrap_or(0), link, way)
    }

    /// Checks combinations: jitter and reorder need a delay, jitter at most the delay.
    pub fn validate(&self) -> Result<(), ImpairError> {
        if !self.reorder.is_zero() && self.delay.is_zero() {
            return Err(ImpairError::Conflict(
                "reorder needs a delay: a reordered packet is sent at once while the others wait the delay",
            ));
        }
        if self.jitter > self.delay {
            return Err(ImpairError::Conflict(
                "jitter is larger than the delay: a packet cannot leave before it arrives",
            ));
        }
        Ok(())
    }
}

const DURATION: &str = "a duration such as 50ms, 1.5s or 200us";
const PERCENT: &str = "a percentage 0 to 100 such as 20%, with an optional correlation (20% 25%)";
const RATE: &str = "a rate such as 10mbit, 1gbit, 500kbit or 2mbps (bytes)";

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.delay.is_zero() {
            parts.push(format!("delay {}", show_duration(self.delay)));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter {}", show_duration(self.jitter)));
        }
        for (name, c) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !c.is_zero() {
                parts.push(format!("{name} {c}"));
            }
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate {r}"));
        }
        if let Some(s) = self.seed {
            parts.push(format!("seed {s}"));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(" "))
    }
}

/// A duration as written: the largest unit that shows it whole.
pub fn show_duration(d: Duration) -> String {
    let n = d.as_nanos();
    for (unit, per) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
        if n >= per && n % per == 0 {
            return format!("{}{unit}", n / per);
        }
    }
    format!("{n}ns")
}

/// `50ms`, `1.5s`, `200us`, `0`; `None` for anything else.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let per = match unit.trim() {
        "s" | "sec" => 1e9,
        "ms" | "msec" => 1e6,
        "us" | "usec" => 1e3,
        "ns" => 1.0,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let nanos = n * per;
    (nanos.is_finite() && (0.0..=3.6e12).contains(&nanos))
        .then(|| Duration::from_nanos(nanos.round() as u64))
}

fn parse_percent(s: &str) -> Option<u32> {
    let n: f64 = s.trim_end_matches('%').trim().parse().ok()?;
    (0.0..=100.0)
        .contains(&n)
        .then(|| (n * 10_000.0).round() as u32)
}

/// `20%`, `20`, `0.5% 25%` (probability, then correlation).
pub fn parse_chance(s: &str) -> Option<Chance> {
    let mut words = s.split_whitespace();
    let ppm = parse_percent(words.next()?)?;
    let correlation_ppm = match words.next() {
        Some(w) => parse_percent(w)?,
        None => 0,
    };
    words.next().is_none().then_some(Chance {
        ppm,
        correlation_ppm,
    })
}

/// A tc rate: `10mbit`, `1.5gbit`, `500kbit`, `800bit`, or bytes with `bps`, `kbps`, `mbps`,
/// `gbps` (tc's meaning: `mbps` is megabytes). At least 8 bit/s.
pub fn parse_rate(s: &str) -> Option<Rate> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    let bits = num.parse::<f64>().ok()? * per;
    (bits.is_finite() && (8.0..=1e12).contains(&bits)).then(|| Rate {
        bits_per_sec: bits.round() as u64,
    })
}

/// Which way along a link: `Forward` is from its first end to its second as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// First end to second.
    Forward,
    /// Second end to first.
    Reverse,
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Way::Forward => "forward",
            Way::Reverse => "reverse",
        })
    }
}

/// The seed of the decider of link `link` (its index in the topology), way `way`: the link's
/// `seed` mixed with its place, so two links with one seed still draw differently.
pub fn stream_seed(seed: u64, link: usize, way: Way) -> u64 {
    let place = ((link as u64) << 1) | u64::from(way == Way::Reverse);
    SimRng::new(seed ^ place.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It is lost.
    Drop,
    /// It leaves after `after`; `twice` when a copy follows it.
    Deliver {
        /// How long it waits.
        after: Duration,
        /// Delivered twice.
        twice: bool,
    },
}

/// One direction's seeded fate-giver. Call [`Decider::fate`] once per packet in arrival order.
#[derive(Debug, Clone)]
pub struct Decider {
    p: Impairment,
    rng: SimRng,
    last: [u32; 3],
}

impl Decider {
    /// A decider for `p` drawing from the stream `seed` (see [`stream_seed`]).
    pub fn new(p: &Impairment, seed: u64) -> Decider {
        Decider {
            p: p.clone(),
            rng: SimRng::new(seed),
            last: [0; 3],
        }
    }

    /// The parameters.
    pub fn impairment(&self) -> &Impairment {
        &self.p
    }

    /// netem's `get_crandom`: a uniform `u32`, correlated with the previous one of its kind.
    fn crandom(&mut self, kind: usize, correlation_ppm: u32) -> u32 {
        let value = u64::from(self.rng.next_u64() as u32);
        if correlation_ppm == 0 {
            return value as u32;
        }
        let rho = u64::from(Chance::scaled(correlation_ppm)) + 1;
        let answer =
            ((value * ((1u64 << 32) - rho) + u64::from(self.last[kind]) * rho) >> 32) as u32;
        self.last[kind] = answer;
        answer
    }

    fn happens(&mut self, kind: usize, c: Chance) -> bool {
        !c.is_zero() && Chance::scaled(c.ppm) >= self.crandom(kind, c.correlation_ppm)
    }

    /// The fate of the next packet.
    pub fn fate(&mut self) -> Fate {
        let p = self.p.clone();
        if self.happens(0, p.loss) {
            return Fate::Drop;
        }
        let twice = self.happens(1, p.duplicate);
        let at_once = self.happens(2, p.reorder);
        let after = if at_once {
            Duration::ZERO
        } else if p.jitter.is_zero() {
            p.delay
        } else {
            let j = p.jitter.as_nanos() as u64;
            let d = p.delay.as_nanos() as u64;
            Duration::from_nanos(d - j + self.rng.below(2 * j + 1))
        };
        Fate::Deliver { after, twice }
    }
}

/// A token-bucket shaper, `tbf` as the lab configures it ([`Rate::bucket`]): a packet leaves
/// when the bucket holds its size; one that would wait longer than the latency is dropped.
#[derive(Debug, Clone)]
pub struct Shaper {
    rate: Rate,
    burst: u64,
    latency: Duration,
    /// When the bucket is next full enough for what is already queued (GCRA's theoretical
    /// arrival time), in nanoseconds of the caller's clock.
    tat: u64,
}

impl Shaper {
    /// A shaper for `rate`.
    pub fn new(rate: Rate) -> Shaper {
        let (burst, latency) = rate.bucket();
        Shaper {
            rate,
            burst: u64::from(burst),
            latency,
            tat: 0,
        }
    }

    fn nanos_for(&self, bytes: u64) -> u64 {
        ((u128::from(bytes) * 8 * 1_000_000_000) / u128::from(self.rate.bits_per_sec)) as u64
    }

    /// A packet of `len` bytes offered at `now_ns`: how long it waits, or `None` if dropped.
    pub fn admit(&mut self, now_ns: u64, len: usize) -> Option<Duration> {
        let tolerance = self.nanos_for(self.burst);
        let earliest = self.tat.saturating_sub(tolerance).max(now_ns);
        let wait = earliest - now_ns;
        if wait > self.latency.as_nanos() as u64 {
            return None;
        }
        self.tat = self.tat.max(earliest) + self.nanos_for(len as u64);
        Some(Duration::from_nanos(wait))
    }
}

#[cfg(test)]
mod tests;
