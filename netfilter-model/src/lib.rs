//! `netfilter-model`: the iptables rules and nft rulesets of the lab's topology files and of
//! `lb`, parsed into a typed model and evaluated for one packet at a time. Pure: no I/O, no
//! kernel, no other workspace crate. The rule layer of the simulator (issue 12): it reads
//! the *same rule strings* the topology files carry, and a rule it cannot evaluate is a
//! one-line error naming the rule, never silently ignored.
//!
//! # Use
//!
//! ```
//! use netfilter_model::{Hook, PacketView, Proto, Ruleset, Table, TableId, Verdict};
//!
//! let mut host = Ruleset::load(
//!     ["-w -t filter -I INPUT -d 10.0.0.50/32 -p tcp -m comment --comment lb:10.0.0.50 -j NFQUEUE --queue-num 0"],
//!     None,
//! )
//! .map_err(|e| e.on_host("h1"))?;
//! let syn = PacketView::new("10.0.0.3".parse()?, "10.0.0.50".parse()?, Proto::Tcp, 40000, 8080);
//! let d = host.traverse(Hook::Input, &TableId::Ip(Table::Filter), &syn, 0);
//! assert_eq!(d.verdict, Verdict::Queue { num: 0, bypass: false });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A simulator walks a hook's base chains in the kernel's order ([`Ruleset::chains_at`]:
//! by priority: raw -300, conntrack -200, mangle -150, dstnat -100, filter 0, security 50,
//! srcnat 100, nft chains at their own priority) with [`Ruleset::traverse_chain`] (or all
//! at once with [`Ruleset::walk`]) and applies each [`Decision`] itself: the final
//! [`Decision::mark`], the [`Effect`]s (mark changes, NOTRACK, TEE copies, LOG) in order,
//! the [`Nat`] binding a NAT chain asks for, and the [`Verdict`] (accept: next chain; drop;
//! queue `num` with `bypass`; reject). NAT chains look only at packets in conntrack state
//! NEW (later packets of the connection use the binding the caller stored). The flow hash
//! for `--queue-balance` is the caller's argument; the queue is `first + ((hash * count) >>
//! 32)`, as the kernel scales it. nft `numgen inc mod N` keeps its counter in the
//! [`Ruleset`] (per rule, starting so the first packet gets 0), which is why traversal
//! takes `&mut self`.
//!
//! # The map
//!
//! | module | what |
//! |---|---|
//! | [`error`] | [`RuleError`], [`HostRuleError`]: every refusal, one line |
//! | [`packet`] | [`PacketView`], [`Proto`], [`CtState`]: what the matches read |
//! | [`hook`] | [`Hook`], [`Table`], [`hook::priority`]: where rules run and in what order |
//! | [`rule`] | [`Match`], [`Action`], [`Rule`], [`Command`], [`Op`]: the typed model |
//! | [`words`] | shell-like word splitting for iptables lines |
//! | [`iptables`] | [`iptables::parse`]: one iptables command line to a [`Command`] |
//! | [`nft`] | [`nft::parse`]: an nft ruleset to [`Command`]s |
//! | `nft_lex` | the nft lexer (tokens with their place in the text, for error quotes) |
//! | `render` | `Display` for [`Command`]: iptables syntax that parses back to the same [`Op`] |
//! | [`ruleset`] | [`Ruleset`]: a host's tables and chains, [`Ruleset::apply`] |
//! | [`eval`] | [`Ruleset::traverse`] and friends, [`Decision`], [`Verdict`], [`Effect`], [`Nat`] |
//!
//! # Supported
//!
//! **iptables** (`[iptables] [-w [S]] [-t raw|mangle|nat|filter|security] COMMAND`):
//! commands `-A CHAIN`, `-I CHAIN [N]`, `-N CHAIN`, `-P CHAIN ACCEPT|DROP` (long forms too);
//! matches `[!] -s/-d ADDR[/LEN]`, `[!] -p tcp|udp|icmp|all|N`, `[!] --sport/--dport
//! P[:Q]` (after `-p tcp|udp`; `-m tcp|udp` accepted), `-m multiport [!]
//! --sports/--dports/--ports LIST`, `[!] -i/-o IFACE[+]`, `-m comment --comment TEXT`, `-m
//! mark [!] --mark V[/M]`, `-m conntrack [!] --ctstate LIST`, `-m state [!] --state LIST`;
//! targets `ACCEPT`, `DROP`, `RETURN`, a user chain (`-j CHAIN`, `-g CHAIN`), `NFQUEUE`
//! (`--queue-num N`, `--queue-balance A:B`, `--queue-bypass`), `MASQUERADE [--to-ports
//! P[-Q]]`, `SNAT --to-source A[-B][:P[-Q]]`, `DNAT --to-destination A[-B][:P[-Q]]`, `CT
//! --notrack`, `NOTRACK`, `MARK --set-mark/--set-xmark V[/M]`, `--and-mark/--or-mark/--xor-mark
//! V` (exact: `mark = (mark & !M) ^ V`, `--set-mark V/M` being `--set-xmark V/(M|V)`), `TEE
//! --gateway ADDR`, `REJECT [--reject-with T]`, `LOG [--log-prefix P] [--log-level L]`.
//!
//! **nft** (`table ip|inet NAME { chain NAME { type filter|nat|route hook H priority P;
//! policy accept|drop; RULES } }`, `#` comments, `;` or newlines between statements,
//! priority by number or name with `± N`): `ip saddr|daddr [!=] ADDR[/LEN]`, `ip protocol`,
//! `meta l4proto`, `tcp|udp sport|dport [!=] P[-Q] | { … }`, `[meta] iifname|oifname [!=]
//! NAME[*]`, `meta mark [!=] V`, `ct state [!=] LIST`, `comment "…"`, `counter`, `accept`,
//! `drop`, `return`, `jump`/`goto CHAIN`, `queue [flags bypass] [num|to] N[-M] [bypass]`,
//! `masquerade [to :P]`, `snat|dnat [ip] to ADDR[:PORT]`, `dnat [ip] to numgen inc mod N
//! [offset O] map { K : ADDR, … } [: PORT]`, `notrack`, `meta mark set V`, `log [prefix P]`,
//! `reject [with T C]`.
//!
//! The corpus of every rule the project uses is `tests/corpus.txt`, with where each comes
//! from; `tests/corpus.rs` parses all of it.
//!
//! # Refused, and how the error reads
//!
//! Everything else, with a [`RuleError`] whose one line names the word and quotes the rule;
//! [`RuleError::on_host`] puts the host in front:
//!
//! - another match module: `unsupported match "-m recent" in "-A INPUT -m recent --set"`
//!   (also `addrtype`, `statistic`, `limit`, …);
//! - a target extension the model does not evaluate: `unsupported target "-j TCPMSS" in "…"`
//!   (`CONNMARK`, `REDIRECT`, `NFLOG`, `QUEUE`, …; an unknown name is a user chain, and
//!   [`Ruleset::apply`] refuses the jump if no such chain exists);
//! - an option of no supported match or of another target: `unsupported option
//!   "--queue-cpu-fanout" in "…"` (also `--random`, `--fail-open`, `--tcp-flags`);
//! - other iptables commands: `unsupported command "-X" in "iptables -X"` (also `-D`, `-F`,
//!   `-R`, `-E`, `-Z`, `-L`, `-S`, `-C`); a line with no command: `a rule starts with -A, -I,
//!   -N or -P (after an optional `iptables` and `-t TABLE`) in "…"`;
//! - nft: another statement or expression (`unsupported statement "limit" in "…"`,
//!   `unsupported expression "ct mark"`), sets of addresses or interfaces, `numgen
//!   random`, queue `fanout`, `ip6`/`arp`/`bridge`/`netdev` tables, `flush`/`add`/`define`;
//! - bad values (`bad port "99999" in "…": …`), IPv6 addresses, host names, and rules the
//!   kernel would refuse at load time (see [`Ruleset::apply`]): `a jump to chain
//!   "NOSUCHCHAIN", which does not exist in table filter in "-A INPUT -p tcp -j NOSUCHCHAIN"`.

#![warn(missing_docs)]

pub mod error;
pub mod eval;
pub mod hook;
pub mod iptables;
pub mod nft;
mod nft_lex;
pub mod packet;
mod render;
pub mod rule;
pub mod ruleset;
pub mod words;

pub use error::{HostRuleError, RuleError};
pub use eval::{BaseChainRef, Decision, Effect, Nat, RuleRef, Verdict};
pub use hook::{Hook, Table};
pub use packet::{CtState, PacketView, Proto};
pub use rule::{
    Action, ChainType, Command, IfaceName, MarkOp, Match, NatTo, Net, NftFamily, Op, Policy,
    PortDir, PortRange, QueueSpec, Rule, TableId,
};
pub use ruleset::Ruleset;
