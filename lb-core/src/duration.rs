//! The one duration grammar of the workspace (configuration files, flags, `lb ctl`, scenarios).
//!
//! A non-negative decimal number followed by a unit: `ms`, `s`, `m` or `min`, `h`; a bare
//! number means seconds. Spaces around the number and unit are allowed. Examples: `500ms`,
//! `2s`, `1.5s`, `1m`, `2min`, `1h`, `0`, `30`.

use std::time::Duration;

/// The largest duration accepted, in seconds (about 31 years: a typo, not a timeout).
const MAX_SECS: f64 = 1e9;

/// Why a text is not a duration; each names the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but spaces.
    #[error("{0:?}: empty duration (want e.g. 500ms, 2s, 1.5s, 1m or 1h)")]
    Empty(String),
    /// The unit is none of `ms`, `s`, `m`, `min`, `h`.
    #[error("{value:?}: unknown unit {unit:?} (want ms, s, m, min or h)")]
    UnknownUnit {
        /// The whole text.
        value: String,
        /// The unit found.
        unit: String,
    },
    /// The number is not a non-negative decimal.
    #[error("{0:?}: want a duration like 500ms, 2s, 1.5s, 1m or 1h")]
    BadNumber(String),
    /// Above 10^9 seconds (about 31 years: a typo, not a timeout).
    #[error("{0:?}: out of range")]
    OutOfRange(String),
}

/// Parses `text` (see the module doc for the grammar).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty(text.to_string()));
    }
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => {
            return Err(DurationError::UnknownUnit {
                value: text.to_string(),
                unit: u.to_string(),
            });
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::BadNumber(text.to_string()))?;
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(DurationError::OutOfRange(text.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Writes `d` in the grammar [`parse`] reads back: whole seconds as `30s`, anything finer in
/// milliseconds (`1500ms`, `0.25ms`).
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let ok = |s: &str| super::parse(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("2min"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("30"), Duration::from_secs(30));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok(" 2 s "), Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_value() {
        let err = |s: &str| super::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("3 days"),
            "\"3 days\": unknown unit \"days\" (want ms, s, m, min or h)"
        );
        assert!(err("-1s").contains("\"-1s\""), "{}", err("-1s"));
        assert!(err("1.2.3s").starts_with("\"1.2.3s\": want a duration"));
        assert!(err("").contains("empty"));
        assert_eq!(
            err("1e12"),
            "\"1e12\": unknown unit \"e12\" (want ms, s, m, min or h)"
        );
        assert_eq!(err("99999999999h"), "\"99999999999h\": out of range");
    }

    #[test]
    fn emit() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_millis(1500),
            Duration::from_micros(250),
        ] {
            assert_eq!(super::parse(&format(d)).unwrap(), d, "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
