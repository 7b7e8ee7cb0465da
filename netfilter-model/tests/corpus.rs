//! Every rule the project uses (tests/corpus.txt) parses, and prints back to the same model.

use netfilter_model::{Command, iptables, nft};

/// An entry of the corpus: its line number and text (an nft block is one entry).
enum Entry {
    Iptables(usize, String),
    Nft(usize, String),
}

fn corpus() -> Vec<Entry> {
    let text = include_str!("corpus.txt");
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some((start, b)) = block.as_mut() {
            if line.trim() == ">>>" {
                out.push(Entry::Nft(*start, std::mem::take(b)));
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t == "nft <<<" {
            block = Some((n, String::new()));
            continue;
        }
        out.push(Entry::Iptables(n, t.to_string()));
    }
    assert!(block.is_none(), "an nft block in corpus.txt has no `>>>`");
    out
}

#[test]
fn every_corpus_rule_parses() {
    let entries = corpus();
    let mut failures = Vec::new();
    let (mut rules, mut rulesets) = (0, 0);
    for e in &entries {
        match e {
            Entry::Iptables(n, line) => {
                rules += 1;
                if let Err(err) = iptables::parse(line) {
                    failures.push(format!("corpus.txt:{n}: {err}"));
                }
            }
            Entry::Nft(n, text) => {
                rulesets += 1;
                match nft::parse(text) {
                    Ok(cmds) => assert!(!cmds.is_empty(), "corpus.txt:{n}: no commands"),
                    Err(err) => failures.push(format!("corpus.txt:{n}: {err}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        rules >= 28 && rulesets >= 1,
        "{rules} rules, {rulesets} rulesets"
    );
}

#[test]
fn every_corpus_iptables_rule_prints_back_to_the_same_model() {
    for e in corpus() {
        let Entry::Iptables(n, line) = e else {
            continue;
        };
        let cmd: Command = iptables::parse(&line).unwrap();
        let shown = cmd.to_string();
        let again = iptables::parse(&shown)
            .unwrap_or_else(|err| panic!("corpus.txt:{n}: `{shown}` does not parse: {err}"));
        assert_eq!(
            again.op, cmd.op,
            "corpus.txt:{n}: `{line}` printed as `{shown}`"
        );
    }
}
