//! The nft lexer: words, strings, `{ } ; ,` and newlines, each with its place in the text.

use crate::error::RuleError;

/// A token's kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Word(String),
    Str(String),
    Punct(char),
    Newline,
}

#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tok {
    pub(crate) fn word(&self) -> Option<&str> {
        match &self.kind {
            Kind::Word(w) => Some(w),
            _ => None,
        }
    }
    pub(crate) fn is(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

pub(crate) fn lex(src: &str) -> Result<Vec<Tok>, RuleError> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '\n' => out.push(Tok {
                kind: Kind::Newline,
                start: i,
                end: i + 1,
            }),
            c if c.is_whitespace() => {}
            '#' => {
                while it.peek().is_some_and(|&(_, c)| c != '\n') {
                    it.next();
                }
            }
            '{' | '}' | ';' | ',' => out.push(Tok {
                kind: Kind::Punct(c),
                start: i,
                end: i + 1,
            }),
            '"' => {
                let mut s = String::new();
                let mut end = None;
                for (j, c) in it.by_ref() {
                    if c == '"' {
                        end = Some(j + 1);
                        break;
                    }
                    s.push(c);
                }
                let end = end.ok_or_else(|| RuleError::Malformed {
                    why: "an unclosed \" quote".into(),
                    rule: line_of(src, i).to_string(),
                })?;
                out.push(Tok {
                    kind: Kind::Str(s),
                    start: i,
                    end,
                });
            }
            _ => {
                let mut end = i + c.len_utf8();
                let mut w = String::from(c);
                while let Some(&(j, c)) = it.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | ',' | '"' | '#') {
                        break;
                    }
                    w.push(c);
                    end = j + c.len_utf8();
                    it.next();
                }
                // `0:` in a map: the key and a separate `:`.
                if w.len() > 1 && w.ends_with(':') {
                    w.pop();
                    out.push(Tok {
                        kind: Kind::Word(w),
                        start: i,
                        end: end - 1,
                    });
                    out.push(Tok {
                        kind: Kind::Word(":".into()),
                        start: end - 1,
                        end,
                    });
                } else {
                    out.push(Tok {
                        kind: Kind::Word(w),
                        start: i,
                        end,
                    });
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn line_of(src: &str, at: usize) -> &str {
    let start = src[..at].rfind('\n').map_or(0, |p| p + 1);
    let end = src[at..].find('\n').map_or(src.len(), |p| at + p);
    src[start..end].trim()
}
