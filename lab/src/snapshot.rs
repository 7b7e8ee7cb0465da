//! Snapshot assertions for traces and ladders, with insta.
//!
//! ```text
//! lab::assert_trace!("seed_h3_view", &trace);   // any `Display` value
//! ```
//!
//! The snapshot lands in `snapshots/` beside the calling file, named
//! `<file>__<name>.snap`. Review workflow:
//! - a mismatch fails the test; locally insta also writes `<name>.snap.new` beside it;
//! - `cargo insta review` (cargo-insta) shows each diff to accept or reject, or
//!   `INSTA_UPDATE=always cargo test -p lab` accepts all;
//! - commit the `.snap` files with the change that caused them.
//!
//! In CI (`CI=true`, as `.ci/run` runs) insta writes nothing: a mismatch or a missing snapshot
//! fails the test. `INSTA_UPDATE=no` does the same on a developer machine. Both are checked in
//! this crate's tests and described in docs/trace-format.md.

#[doc(hidden)]
pub use insta as __insta;

/// insta settings for trace snapshots: filters for anything that might still vary in text that
/// sits beside a trace (MAC addresses, wall-clock times, `ip:port` with an ephemeral port).
pub fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_omit_expression(true);
    s.add_filter(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b", "[mac]");
    s.add_filter(r"\b\d{2}:\d{2}:\d{2}\.\d{6,9}\b", "[time]");
    s.add_filter(r"\b(\d{1,3}(?:\.\d{1,3}){3}):(?:3276[89]|327[7-9]\d|32[89]\d\d|3[3-9]\d{3}|[4-5]\d{4}|6[0-4]\d{3}|65[0-4]\d\d|655[0-2]\d|6553[0-5])\b", "$1:[port]");
    s
}

/// Asserts that a trace (or ladder, or any `Display` value) matches the named snapshot.
#[macro_export]
macro_rules! assert_trace {
    ($name:expr, $value:expr $(,)?) => {
        $crate::snapshot::settings().bind(|| {
            $crate::snapshot::__insta::assert_snapshot!(
                $name,
                ::std::string::ToString::to_string(&$value)
            );
        })
    };
}
