//! The one error type: a rule the model cannot read or apply, said in one line.

use thiserror::Error;

/// Why a rule (or an nft statement) was refused. Every variant prints as one line that names
/// the word or statement not understood and quotes the whole rule, e.g.
/// `unsupported match "-m recent" in "-A INPUT -m recent --set"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// A match, target, option, statement or command the model does not evaluate.
    #[error("unsupported {what} \"{word}\" in \"{rule}\"")]
    Unsupported {
        /// What kind of word: `match`, `target`, `option`, `statement`, `command`, ….
        what: &'static str,
        /// The word (or words) as written.
        word: String,
        /// The whole rule as written.
        rule: String,
    },
    /// A word the model knows, with a value it cannot read (`--dport 99999`).
    #[error("bad {what} \"{word}\" in \"{rule}\": {why}")]
    Invalid {
        /// What was being read: `address`, `port`, `mark`, ….
        what: &'static str,
        /// The value as written.
        word: String,
        /// Why it is refused.
        why: String,
        /// The whole rule as written.
        rule: String,
    },
    /// The rule as a whole is malformed (an unclosed quote, a missing argument, a jump to a
    /// chain that does not exist, a target in a table that does not allow it).
    #[error("{why} in \"{rule}\"")]
    Malformed {
        /// What is wrong.
        why: String,
        /// The whole rule as written.
        rule: String,
    },
}

impl RuleError {
    /// Names the host the rule belongs to: `h1: unsupported match "-m recent" in "…"`.
    pub fn on_host(self, host: &str) -> HostRuleError {
        HostRuleError {
            host: host.to_string(),
            error: self,
        }
    }

    /// The rule as written that this error is about.
    pub fn rule(&self) -> &str {
        match self {
            RuleError::Unsupported { rule, .. }
            | RuleError::Invalid { rule, .. }
            | RuleError::Malformed { rule, .. } => rule,
        }
    }
}

/// The text of the rule being read, to build its errors from (both parsers use it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading<'a>(pub(crate) &'a str);

impl Reading<'_> {
    /// `unsupported WHAT "WORD" in "RULE"`.
    pub(crate) fn unsupported(self, what: &'static str, word: impl Into<String>) -> RuleError {
        RuleError::Unsupported {
            what,
            word: word.into(),
            rule: self.0.to_string(),
        }
    }

    /// `bad WHAT "WORD" in "RULE": WHY`.
    pub(crate) fn invalid(
        self,
        what: &'static str,
        word: &str,
        why: impl Into<String>,
    ) -> RuleError {
        RuleError::Invalid {
            what,
            word: word.to_string(),
            why: why.into(),
            rule: self.0.to_string(),
        }
    }
}

/// A [`RuleError`] with the host whose rules held the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{host}: {error}")]
pub struct HostRuleError {
    /// The host (topology node) name.
    pub host: String,
    /// The error.
    pub error: RuleError,
}
