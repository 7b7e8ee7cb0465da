//! Shell-like word splitting for iptables lines: blanks separate, quotes group, `\` escapes.

/// Splits `line` into words: whitespace separates, `'…'` and `"…"` group (the quotes are
/// removed), a backslash outside single quotes takes the next character literally. An
/// unclosed quote or a trailing backslash is an error (its text says which).
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err("a trailing backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("an unclosed {q} quote"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Quotes a word for display when it needs it (blanks, quotes, backslashes, empty).
pub fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\'));
    match plain {
        true => w.to_string(),
        false => {
            let mut s = String::from("\"");
            for c in w.chars() {
                if matches!(c, '"' | '\\') {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_group_words_and_are_removed() {
        assert_eq!(
            split(r#"-m comment --comment "a b" -j 'X Y'"#).unwrap(),
            ["-m", "comment", "--comment", "a b", "-j", "X Y"]
        );
        assert_eq!(split(r#"a\ b "" c"#).unwrap(), ["a b", "", "c"]);
        assert!(split("--comment \"open").is_err());
        assert_eq!(split(&quote("a \"b\"")).unwrap(), ["a \"b\""]);
    }
}
