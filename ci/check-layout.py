#!/usr/bin/env python3
"""Check the layout of the workspace's Rust crates: no import circles, no huge files.

Run from the repository root (CI does): ``python3 ci/check-layout.py``.
The crates are the workspace members of the root Cargo.toml whose own Cargo.toml has a
``[package]``.  Two rules:

1. No import circles between the files of one crate.  The nodes are the module files under
   ``src/`` reached through ``mod`` declarations from each crate root (``lib.rs``,
   ``main.rs``, ``src/bin/*``, or the paths named in Cargo.toml; every root is its own module
   tree, so ``main.rs`` naming ``<crate>::x`` is another crate and not an edge).  An edge
   A -> B exists when file A names module B through a path: ``use crate::..``,
   ``use super::..``, ``use self::..``, ``use child::..`` (2018 relative paths), and the same
   paths in code (``crate::x::f()``, ``super::z::T``).  A path is resolved to the file that
   DEFINES the name: a name that a module only imports or re-exports (``pub use child::T``)
   is followed to its definition, so "mod.rs re-exports its children, a child takes a
   sibling's type through ``super::``" is an edge to the sibling, not to mod.rs.  Only a name
   that cannot be found falls back to the deepest module file on the path.  Inline
   ``mod x { .. }`` blocks belong to their file.  Test code is ignored: any item under
   ``#[cfg(test)]`` (inline ``mod tests { use super::*; }``, a ``#[cfg(test)] mod tests;``
   file, a ``#[cfg(test)] #[path = ".."]`` file), because a test reaching up into its parent
   is not an architectural circle.  Why: a circle between files means neither can be
   understood, tested or moved without the other; it is where layering quietly erodes.
   Each strongly connected component of more than one file is reported with concrete
   circles (the files and the line of every edge) so a reader can cut one edge.

2. No ``.rs`` file (src, tests, benches, examples) over 800 lines without a reason: such a
   file must say within its first 15 lines, in a comment containing ``one concept:``, why it
   is one piece (e.g. ``//! one concept: the step validation table; ...``).  Why: long files
   usually hold several concepts that are easier to read, review and own apart.

Output: one line per problem, then ``layout: N import circles, M oversized files`` and exit
status 1; or ``layout: ok (K crates, F files)`` and exit status 0.

Options: ``--verbose`` also prints every file's edges (with the line of each reference) and,
for each component, circles that together cover all of its edges; ``--self-test`` runs the
built-in unit tests; ``--root DIR`` checks another tree (default: the current directory).
A component larger than the circle shown on its line says so and lists its files.

The Rust reading is lexical (comments and literals blanked, brackets matched, items and
``use`` trees parsed); it does not expand macros or evaluate ``#[cfg]`` other than
``cfg(test)``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import unittest
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINES = 800
REASON_LINES = 15
REASON_MARK = "one concept:"
SKIP_DIRS = {"target", ".git"}

# --------------------------------------------------------------------------------------------
# Lexing


def blank_rust(src: str) -> str:
    """Return `src` with comments and the insides of string/char literals replaced by spaces.

    Newlines are kept, so line numbers stay right; a literal becomes ``""`` / ``''`` padded
    with spaces, so it is still one token.
    """
    out: list[str] = []
    i, n = 0, len(src)

    def blank(s: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        prev_ident = i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif c in "br" and not prev_ident and (m := re.match(r'(b?r)(#*)"', src[i:i + 300])):
            # raw string r"..", r#".."#, br#".."#
            close = '"' + m.group(2)
            j = src.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append('""' + blank(src[i + 2:j]))
            i = j
        elif c == '"' or (c == "b" and nxt == '"' and not prev_ident):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append('""' + blank(src[i + 2:j]))
            i = j
        elif c == "'" or (c == "b" and nxt == "'" and not prev_ident):
            k = i + (2 if c == "b" else 1)
            if k < n and src[k] == "\\":  # escaped char literal
                j = k + 1
                while j < n and src[j] != "'":
                    j += 1
                j = min(j + 1, n)
                out.append("''" + blank(src[i + 2:j]))
                i = j
            elif k + 1 < n and src[k + 1] == "'" and src[k] != "\n":  # 'x'
                out.append("''" + blank(src[i + 2:k + 2]))
                i = k + 2
            else:  # a lifetime or label
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


TOKEN_RE = re.compile(r"r#[A-Za-z_]\w*|[A-Za-z_]\w*|::|\d[\w.]*|''|\"\"|\S")


@dataclass
class Tok:
    text: str
    line: int

    @property
    def ident(self) -> bool:
        return bool(re.match(r"[A-Za-z_]", self.text))


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    line, pos = 1, 0
    text = blank_rust(src)
    for m in TOKEN_RE.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        t = m.group()
        toks.append(Tok(t[2:] if t.startswith("r#") else t, line))
    return toks


OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")", "]", "}"}


def matching(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at `i` (or the last index)."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if t in OPEN:
            depth += 1
        elif t in CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def item_end(toks: list[Tok], i: int, end: int) -> int:
    """Index just past the item starting at `i`: its `;` or its closing `}` at depth 0."""
    depth = 0
    j = i
    while j < end:
        t = toks[j].text
        if t in OPEN:
            depth += 1
        elif t in CLOSE:
            depth -= 1
            if depth == 0 and t == "}":
                return j + 1
            if depth < 0:
                return j
        elif t == ";" and depth == 0:
            return j + 1
        j += 1
    return end


# --------------------------------------------------------------------------------------------
# Parsing one file into module scopes


@dataclass
class Ref:
    """A path in a file that may name a module of the crate."""

    file: str
    line: int
    scope: tuple[str, ...]
    segs: list[str]
    glob: bool
    is_use: bool

    def text(self) -> str:
        p = "::".join(self.segs) + ("::*" if self.glob else "")
        return f"use {p}" if self.is_use else p


@dataclass
class Module:
    path: tuple[str, ...]
    file: str
    defs: set[str] = field(default_factory=set)
    imports: dict[str, list[str]] = field(default_factory=dict)  # name -> path
    globs: list[list[str]] = field(default_factory=list)
    children: set[str] = field(default_factory=set)


@dataclass
class ModDecl:
    name: str
    scope: tuple[str, ...]
    inline_dirs: tuple[str, ...]  # inline modules between the file's module and `scope`
    path_attr: str | None
    test: bool


ITEM_KW = {"struct", "enum", "fn", "trait", "type", "const", "static", "union", "mod"}
QUALIFIERS = {"unsafe", "async", "extern", "default", "safe", '""'}


def is_cfg_test(attr: list[Tok]) -> bool:
    s = " ".join(t.text for t in attr)
    s = re.sub(r"\s+", "", s)
    return s.startswith("cfg(test") or s.startswith("cfg(all(test")


def read_attrs(toks: list[Tok], i: int, end: int) -> tuple[list[list[Tok]], str | None, int]:
    """Read outer attributes at `i` (inner `#![..]` ones are skipped)."""
    attrs: list[list[Tok]] = []
    path_attr = None
    while i < end and toks[i].text == "#":
        j = i + 1
        if j < end and toks[j].text == "!":
            j += 1
        if j >= end or toks[j].text != "[":
            break
        close = matching(toks, j)
        body = toks[j + 1:close]
        attrs.append(body)
        if body and body[0].text == "path":
            path_attr = ""  # filled from the raw source by the caller
        i = close + 1
    return attrs, path_attr, i


class FileParser:
    """Reads one file: module scopes (defs, imports), `mod` declarations, and path refs."""

    def __init__(self, rel: str, src: str, mod_path: tuple[str, ...], modules: dict):
        self.rel = rel
        self.src_lines = src.splitlines()
        self.toks = tokenize(src)
        self.modules = modules
        self.decls: list[ModDecl] = []
        self.refs: list[Ref] = []
        self.mod_path = mod_path
        self.modules.setdefault(mod_path, Module(mod_path, rel))
        self.items(0, len(self.toks), mod_path, ())

    def path_attr_value(self, line: int) -> str | None:
        for ln in range(max(0, line - 4), min(len(self.src_lines), line + 1)):
            m = re.search(r'#\[\s*path\s*=\s*"([^"]+)"', self.src_lines[ln])
            if m:
                return m.group(1)
        return None

    def items(self, i: int, end: int, scope: tuple[str, ...], inline: tuple[str, ...]) -> None:
        toks = self.toks
        mod = self.modules.setdefault(scope, Module(scope, self.rel))
        while i < end:
            start = i
            attrs, path_attr, i = read_attrs(toks, i, end)
            if i >= end:
                break
            test = any(is_cfg_test(a) for a in attrs)
            if toks[i].text == ";":
                i += 1
                continue
            if toks[i].text == "pub":
                i += 1
                if i < end and toks[i].text == "(":
                    i = matching(toks, i) + 1
            if i >= end:
                break
            t = toks[i].text
            if t == "use":
                j = item_end(toks, i, end)
                if not test:
                    self.use_tree(i + 1, j - 1, scope, mod)
                i = j
                continue
            if t == "mod" and i + 2 < end and toks[i + 1].ident:
                name = toks[i + 1].text
                if toks[i + 2].text == ";":
                    pa = self.path_attr_value(toks[i].line - 1) if path_attr is not None else None
                    self.decls.append(ModDecl(name, scope, inline, pa, test))
                    if not test:
                        mod.children.add(name)
                    i += 3
                    continue
                if toks[i + 2].text == "{":
                    close = matching(toks, i + 2)
                    if not test:
                        mod.children.add(name)
                        self.items(i + 3, close, scope + (name,), inline + (name,))
                    i = close + 1
                    continue
            # any other item: note its name, then read the paths in it
            k = i
            while k < end and (toks[k].text in QUALIFIERS or (
                    toks[k].text == "const" and k + 1 < end
                    and toks[k + 1].text in {"fn", "unsafe", "async", "extern"})):
                k += 1
            if k + 1 < end and toks[k].text in ITEM_KW:
                n = k + 1
                if toks[n].text == "mut":
                    n += 1
                if n < end and toks[n].ident and not test:
                    mod.defs.add(toks[n].text)
            elif (k + 2 < end and toks[k].text == "macro_rules" and toks[k + 1].text == "!"
                  and not test):
                mod.defs.add(toks[k + 2].text)
            j = item_end(toks, i, end)
            if j <= start:
                j = start + 1
            if not test:
                self.code(i, j, scope, mod)
            i = j

    def code(self, i: int, end: int, scope: tuple[str, ...], mod: Module) -> None:
        """Find `use` statements and paths `a::b::c` in an item body."""
        toks = self.toks
        while i < end:
            t = toks[i]
            if t.text == "use" and (i == 0 or toks[i - 1].text in {";", "{", "}", ")", "]"}
                                    or toks[i - 1].text == "pub"):
                j = item_end(toks, i, end)
                self.use_tree(i + 1, j - 1, scope, None)
                i = j
                continue
            if (t.ident and i + 2 < end and toks[i + 1].text == "::" and toks[i + 2].ident
                    and not (i > 0 and toks[i - 1].text in {"::", "$", ".", "'"})):
                segs = [t.text]
                j = i + 1
                while j + 1 < end and toks[j].text == "::" and toks[j + 1].ident:
                    segs.append(toks[j + 1].text)
                    j += 2
                self.refs.append(Ref(self.rel, t.line, scope, segs, False, False))
                i = j
                continue
            i += 1

    def use_tree(self, i: int, end: int, scope: tuple[str, ...], mod: Module | None) -> None:
        """Parse `use` tree tokens [i, end) (without `use` and `;`)."""
        toks = self.toks
        leaves: list[tuple[list[str], str | None, bool, int]] = []

        def tree(i: int, prefix: list[str]) -> int:
            segs: list[str] = []
            if i < end and toks[i].text == "::":
                segs.append("::")
                i += 1
            line = toks[i].line if i < end else 0
            while i < end:
                t = toks[i].text
                if t == "{":
                    close = min(matching(toks, i), end)
                    k = i + 1
                    while k < close:
                        k = tree(k, prefix + segs)
                        if k < close and toks[k].text == ",":
                            k += 1
                        elif k < close:
                            k += 1  # unexpected token: skip it
                    return close + 1
                if t == "*":
                    leaves.append((prefix + segs, None, True, toks[i].line))
                    return i + 1
                if toks[i].ident:
                    segs.append(t)
                    line = toks[i].line
                    i += 1
                    if i < end and toks[i].text == "::":
                        i += 1
                        continue
                    alias = None
                    if i + 1 < end and toks[i].text == "as":
                        alias = toks[i + 1].text
                        i += 2
                    full = prefix + segs
                    if segs == ["self"]:
                        full = prefix  # `use a::{self}`
                    leaves.append((full, alias, False, line))
                    return i
                return i
            return i

        k = i
        while k < end:
            nk = tree(k, [])
            k = nk if nk > k else k + 1
        for segs, alias, glob, line in leaves:
            if not segs:
                continue
            self.refs.append(Ref(self.rel, line, scope, segs, glob, True))
            if mod is None:
                continue
            if glob:
                mod.globs.append(segs)
            else:
                name = alias or segs[-1]
                if name != "_" and segs[-1] != "::":
                    mod.imports[name] = segs


# --------------------------------------------------------------------------------------------
# Crate module trees


@dataclass
class Tree:
    """One crate root's module tree: module path -> Module (inline modules included)."""

    root_file: str
    modules: dict[tuple[str, ...], Module] = field(default_factory=dict)
    refs: list[Ref] = field(default_factory=list)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_module(self, p: tuple[str, ...]) -> bool:
        return p in self.modules

    def resolve_path(self, scope: tuple[str, ...], segs: list[str],
                     seen: frozenset = frozenset()):
        """Resolve a path to (module path, rest), or None when it is not in this crate."""
        if not segs:
            return None
        first, rest = segs[0], list(segs[1:])
        if first == "crate":
            m: tuple[str, ...] = ()
        elif first == "self":
            m = scope
        elif first == "super":
            m = scope
            if not m:
                return None
            m = m[:-1]
            while rest and rest[0] == "super":
                if not m:
                    return None
                m = m[:-1]
                rest.pop(0)
        elif first == "::":
            return None
        elif self.is_module(scope + (first,)):
            m = scope + (first,)
        else:
            # a name imported into the scope (`use super::model; model::Step`)
            mod = self.modules.get(scope)
            key = (scope, first)
            if mod and first in mod.imports and key not in seen and mod.imports[first] != segs:
                r = self.resolve_path(scope, mod.imports[first], seen | {key})
                if r is None:
                    return None
                m, r_rest = r
                if r_rest:
                    return m, r_rest + rest
            else:
                return None
        while rest and self.is_module(m + (rest[0],)):
            m = m + (rest[0],)
            rest.pop(0)
        return m, rest

    def resolve_name(self, m: tuple[str, ...], name: str, seen: set) -> tuple[bool, str | None]:
        """Where `name`, as seen in module `m`, is defined: (found, file or None if external)."""
        if (m, name) in seen:
            return False, None
        seen.add((m, name))
        mod = self.modules.get(m)
        if mod is None:
            return False, None
        if name in mod.defs:
            return True, mod.file
        if name in mod.imports:
            r = self.resolve_path(m, mod.imports[name])
            if r is None:
                return True, None  # another crate (std, a dependency)
            m2, rest = r
            if not rest:
                return True, self.modules[m2].file
            found, f = self.resolve_name(m2, rest[0], seen)
            return True, (f if found else self.modules[m2].file)
        for g in mod.globs:
            r = self.resolve_path(m, g)
            if r is None or r[1]:
                continue
            found, f = self.resolve_name(r[0], name, seen)
            if found:
                return True, f
        return False, None

    def target(self, ref: Ref) -> str | None:
        """The file a ref depends on, or None (another crate, or not a path to a module)."""
        r = self.resolve_path(ref.scope, ref.segs)
        if r is None:
            return None
        m, rest = r
        if not rest or ref.glob and not rest:
            return self.modules[m].file
        if rest == ["self"]:
            return self.modules[m].file
        found, f = self.resolve_name(m, rest[0], set())
        if found:
            return f
        return self.modules[m].file


def is_mod_rs_like(rel: str, root: bool) -> bool:
    return root or Path(rel).name == "mod.rs"


def build_tree(src_dir: Path, root_rel: str) -> Tree:
    """Read the module tree of one crate root, following `mod x;` declarations."""
    tree = Tree(root_rel)
    queue: deque[tuple[str, tuple[str, ...], bool]] = deque([(root_rel, (), True)])
    while queue:
        rel, mod_path, is_root = queue.popleft()
        if rel in tree.files:
            continue
        path = (src_dir / rel)
        try:
            src = path.read_text(encoding="utf-8")
        except OSError:
            continue
        tree.files[rel] = mod_path
        fp = FileParser(rel, src, mod_path, tree.modules)
        tree.refs.extend(fp.refs)
        base = Path(rel).parent
        if not is_mod_rs_like(rel, is_root):
            base = base / Path(rel).stem
        for d in fp.decls:
            if d.test:
                continue  # test module files are not part of the architecture
            if d.path_attr is not None:
                cand = [Path(rel).parent.joinpath(*d.inline_dirs) / d.path_attr]
            else:
                dirp = base.joinpath(*d.inline_dirs)
                cand = [dirp / f"{d.name}.rs", dirp / d.name / "mod.rs"]
            for c in cand:
                c = Path(*[p for p in c.parts if p != "."]) if c.parts else c
                if (src_dir / c).is_file():
                    crel = _norm(c)
                    tree.modules.setdefault(d.scope + (d.name,), Module(d.scope + (d.name,), crel))
                    queue.append((crel, d.scope + (d.name,), False))
                    break
    return tree


def _norm(p: Path) -> str:
    parts: list[str] = []
    for s in p.parts:
        if s == "..":
            if parts:
                parts.pop()
        elif s != ".":
            parts.append(s)
    return "/".join(parts)


@dataclass
class Edge:
    src: str
    dst: str
    refs: list[Ref]


def crate_roots(crate_dir: Path, manifest: dict) -> list[str]:
    """Root files of a crate, relative to its `src/` directory (lib first)."""
    src = crate_dir / "src"
    roots: list[str] = []

    def add(p: str) -> None:
        full = crate_dir / p
        if full.is_file():
            try:
                r = _norm(full.relative_to(src))
            except ValueError:
                return
            if r not in roots:
                roots.append(r)

    add(manifest.get("lib", {}).get("path", "src/lib.rs"))
    for b in manifest.get("bin", []) or []:
        if "path" in b:
            add(b["path"])
    add("src/main.rs")
    if (src / "bin").is_dir():
        for p in sorted((src / "bin").iterdir()):
            if p.suffix == ".rs":
                add(str(p.relative_to(crate_dir)))
            elif (p / "main.rs").is_file():
                add(str((p / "main.rs").relative_to(crate_dir)))
    return roots


def crate_graph(src_dir: Path, roots: list[str]) -> tuple[dict[str, dict[str, Edge]], set[str]]:
    """Edges file -> file -> Edge over all root trees of a crate, and the files seen."""
    graph: dict[str, dict[str, Edge]] = {}
    files: set[str] = set()
    for root in roots:
        tree = build_tree(src_dir, root)
        files.update(tree.files)
        for ref in tree.refs:
            dst = tree.target(ref)
            if dst is None or dst == ref.file:
                continue
            e = graph.setdefault(ref.file, {}).setdefault(dst, Edge(ref.file, dst, []))
            if not any(r.line == ref.line and r.text() == ref.text() for r in e.refs):
                e.refs.append(ref)
    for edges in graph.values():
        for e in edges.values():
            e.refs.sort(key=lambda r: r.line)
    return graph, files


def sccs(nodes: list[str], graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def component_circles(comp: list[str], graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Concrete circles that together cover every edge of the component."""
    cset = set(comp)
    edges = {(a, b) for a in comp for b in graph.get(a, {}) if b in cset}
    covered: set[tuple[str, str]] = set()
    circles: list[list[str]] = []
    for a, b in sorted(edges):
        if (a, b) in covered:
            continue
        # shortest circle through the edge a -> b: a -> b, then b ~> a
        path = _shortest_path(b, a, cset, graph)
        if path is None:
            continue
        circle = [a] + path
        # rotate so that the smallest file comes first, for stable output
        body = circle[:-1]
        k = body.index(min(body))
        circle = body[k:] + body[:k] + [body[k]]
        if circle in circles:
            continue
        circles.append(circle)
        covered.update(zip(circle, circle[1:]))
    return circles


def _shortest_path(src: str, dst: str, cset: set[str], graph) -> list[str] | None:
    if src == dst:
        return [src]
    prev: dict[str, str] = {}
    q = deque([src])
    seen = {src}
    while q:
        v = q.popleft()
        for w in sorted(graph.get(v, {})):
            if w not in cset or w in seen:
                continue
            seen.add(w)
            prev[w] = v
            if w == dst:
                path = [w]
                while path[-1] != src:
                    path.append(prev[path[-1]])
                return list(reversed(path))
            q.append(w)
    return None


# --------------------------------------------------------------------------------------------
# The checks


@dataclass
class Report:
    circles: list[str] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    crates: int = 0
    files: int = 0


def workspace_crates(root: Path) -> list[Path]:
    with open(root / "Cargo.toml", "rb") as f:
        top = tomllib.load(f)
    members: list[str] = list(top.get("workspace", {}).get("members", []))
    excluded = set(top.get("workspace", {}).get("exclude", []))
    dirs: list[Path] = []
    if "package" in top:
        dirs.append(root)
    for pat in members:
        for d in sorted(root.glob(pat)) if any(c in pat for c in "*?[") else [root / pat]:
            rel = d.relative_to(root).as_posix()
            if rel in excluded or not (d / "Cargo.toml").is_file():
                continue
            with open(d / "Cargo.toml", "rb") as f:
                if "package" in tomllib.load(f) and d not in dirs:
                    dirs.append(d)
    return dirs


def rust_files(crate_dir: Path, other_crates: list[Path]) -> list[Path]:
    out = []
    nested = [c for c in other_crates if c != crate_dir and crate_dir in c.parents]
    for p in sorted(crate_dir.rglob("*.rs")):
        rel = p.relative_to(crate_dir)
        if any(part in SKIP_DIRS for part in rel.parts):
            continue
        if any(n in p.parents for n in nested):
            continue
        out.append(p)
    return out


def check_size(path: Path, shown: str) -> str | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if len(lines) <= MAX_LINES:
        return None
    for ln in lines[:REASON_LINES]:
        s = ln.strip()
        if (s.startswith("//") or s.startswith("/*") or s.startswith("*")) and REASON_MARK in s:
            return None
    return (f'{shown}: {len(lines)} lines (over {MAX_LINES}) without a "{REASON_MARK}" '
            f"reason in its first lines")


def fmt_circle(prefix: str, circle: list[str], graph: dict[str, dict[str, Edge]]) -> str:
    ev = []
    for a, b in zip(circle, circle[1:]):
        r = graph[a][b].refs[0]
        ev.append(f"{a}:{r.line} `{r.text()}`")
    return f"{prefix}: import circle: {' -> '.join(circle)} ({', '.join(ev)})"


def check(root: Path, verbose: bool = False) -> Report:
    rep = Report()
    crates = workspace_crates(root)
    rep.crates = len(crates)
    for crate in crates:
        with open(crate / "Cargo.toml", "rb") as f:
            manifest = tomllib.load(f)
        src_dir = crate / "src"
        prefix = (src_dir.relative_to(root)).as_posix()
        for p in rust_files(crate, crates):
            rep.files += 1
            problem = check_size(p, p.relative_to(root).as_posix())
            if problem:
                rep.oversized.append(problem)
        if not src_dir.is_dir():
            continue
        roots = crate_roots(crate, manifest)
        graph, files = crate_graph(src_dir, roots)
        if verbose:
            for a in sorted(files):
                for b, e in sorted(graph.get(a, {}).items()):
                    lines = ", ".join(f"{r.line} `{r.text()}`" for r in e.refs)
                    rep.verbose.append(f"{prefix}: {a} -> {b} ({lines})")
        for comp in sccs(sorted(files), graph):
            if len(comp) < 2:
                continue
            circles = component_circles(comp, graph)
            line = fmt_circle(prefix, circles[0], graph)
            if len(circles) > 1 or len(comp) > len(circles[0]) - 1:
                line += (f" [one component of {len(comp)} files: {', '.join(comp)};"
                         f" {len(circles)} circles cover its edges, --verbose lists them]")
            rep.circles.append(line)
            if verbose:
                for c in circles:
                    rep.verbose.append("  " + fmt_circle(prefix, c, graph))
    return rep


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--verbose", action="store_true", help="print every file's edges")
    ap.add_argument("--self-test", action="store_true", help="run the built-in unit tests")
    ap.add_argument("--root", default=".", help="workspace root (default: .)")
    args = ap.parse_args(argv)
    if args.self_test:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
        ok = unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()
        return 0 if ok else 1
    root = Path(args.root)
    if not (root / "Cargo.toml").is_file():
        print(f"layout: no Cargo.toml in {root.resolve()}; run from the repository root",
              file=sys.stderr)
        return 2
    rep = check(root, args.verbose)
    for v in rep.verbose:
        print(v)
    for p in rep.circles + rep.oversized:
        print(p)
    if rep.circles or rep.oversized:
        print(f"layout: {len(rep.circles)} import circles, {len(rep.oversized)} oversized files")
        return 1
    print(f"layout: ok ({rep.crates} crates, {rep.files} files)")
    return 0


# --------------------------------------------------------------------------------------------
# Self-test

class SelfTest(unittest.TestCase):
    def setUp(self) -> None:
        import tempfile
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            p = self.root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)

    def crate(self, src: dict[str, str], extra: dict[str, str] | None = None) -> Report:
        files = {
            "Cargo.toml": '[workspace]\nmembers = ["c"]\n',
            "c/Cargo.toml": '[package]\nname = "c"\nversion = "0.1.0"\n',
        }
        files.update({f"c/src/{k}": v for k, v in src.items()})
        files.update(extra or {})
        self.write(files)
        return check(self.root)

    def test_two_file_cycle_via_crate(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\npub struct A;\n",
            "b.rs": "// x\nuse crate::a::A;\npub struct B;\n",
        })
        self.assertEqual(rep.circles, [
            "c/src: import circle: a.rs -> b.rs -> a.rs "
            "(a.rs:1 `use crate::b::B`, b.rs:2 `use crate::a::A`)"])

    def test_code_path_and_super_super(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod x;\npub mod y;\n",
            "x/mod.rs": "pub mod z;\n",
            "x/z.rs": "pub fn f() { super::super::y::g(); }\n",
            "y.rs": "pub fn g() {}\npub fn h() { crate::x::z::f() }\n",
        })
        self.assertEqual(len(rep.circles), 1)
        self.assertIn("x/z.rs -> y.rs -> x/z.rs", rep.circles[0])
        self.assertIn("x/z.rs:1 `super::super::y::g`", rep.circles[0])

    def test_reexport_resolves_to_defining_sibling(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod core;\n",
            "core/mod.rs": ("mod backend;\nmod table;\npub use backend::BackendId;\n"
                            "pub use table::Table;\npub struct State(Table);\n"),
            "core/backend.rs": "pub struct BackendId;\n",
            "core/table.rs": "use super::BackendId;\npub struct Table(BackendId);\n",
        })
        self.assertEqual(rep.circles, [])

    def test_cycle_through_super_when_parent_defines(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod core;\n",
            "core/mod.rs": "mod table;\npub use table::Table;\npub struct Id;\n",
            "core/table.rs": "use super::Id;\npub struct Table(Id);\n",
        })
        self.assertEqual(rep.circles, [
            "c/src: import circle: core/mod.rs -> core/table.rs -> core/mod.rs "
            "(core/mod.rs:2 `use table::Table`, core/table.rs:1 `use super::Id`)"])

    def test_grouped_imports(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod c;\npub mod x;\n",
            "a.rs": "pub struct B;\n",
            "c/mod.rs": "pub mod d;\npub mod e;\n",
            "c/d.rs": "pub fn d() {}\n",
            "c/e.rs": "pub fn e() {}\n",
            "x.rs": "pub(crate) use crate::{a::B, c::{d::{self}, e::e as ee}};\n",
        })
        self.assertEqual(rep.circles, [])
        graph, _ = crate_graph(self.root / "c/src", ["lib.rs"])
        self.assertEqual(sorted(graph["x.rs"]), ["a.rs", "c/d.rs", "c/e.rs"])

    def test_grouped_import_cycle(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::{\n    b::{B, C},\n};\npub struct A;\n",
            "b.rs": "pub struct B;\npub struct C;\npub fn f() -> crate::a::A { todo!() }\n",
        })
        self.assertEqual(len(rep.circles), 1)
        self.assertIn("a.rs:2 `use crate::b::B`", rep.circles[0])
        self.assertIn("b.rs:3 `crate::a::A`", rep.circles[0])

    def test_cfg_test_module_ignored(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\npub struct A;\n",
            "b.rs": ("pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n"
                     "    use crate::a::A;\n    #[test]\n    fn t() { let _ = crate::a::A; }\n}\n"),
        })
        self.assertEqual(rep.circles, [])

    def test_cfg_test_file_and_path_ignored(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\npub struct A;\n",
            "b/mod.rs": ("pub struct B;\n#[cfg(test)]\nmod tests;\n"
                         "#[cfg(test)]\n#[path = \"../b_tests.rs\"]\nmod more;\n"),
            "b/tests.rs": "use crate::a::A;\n",
            "b_tests.rs": "use crate::a::A;\n",
        })
        self.assertEqual(rep.circles, [])
        _, files = crate_graph(self.root / "c/src", ["lib.rs"])
        self.assertEqual(sorted(files), ["a.rs", "b/mod.rs", "lib.rs"])

    def test_inline_non_test_module_belongs_to_file(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "mod field {\n    use super::*;\n    pub fn f() { crate::b::g() }\n}\n",
            "b.rs": "pub fn g() { crate::a::h() }\n",
        })
        self.assertEqual(len(rep.circles), 1)
        self.assertIn("a.rs:3 `crate::b::g`", rep.circles[0])

    def test_main_is_separate_root(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\n",
            "a.rs": "pub struct A;\n",
            "main.rs": "mod server;\nmod intake;\nuse c::a::A;\nfn main() {}\n",
            "server.rs": "use crate::intake::run;\npub struct DataPath;\n",
            "intake.rs": "use crate::server::DataPath;\npub fn run() {}\n",
        })
        self.assertEqual(len(rep.circles), 1)
        self.assertIn("intake.rs -> server.rs -> intake.rs", rep.circles[0])

    def test_glob_import_outside_tests(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod p;\n",
            "p/mod.rs": "mod q;\npub use q::Q;\npub struct P;\n",
            "p/q.rs": "use super::*;\npub struct Q;\n",
        })
        self.assertEqual(len(rep.circles), 1)
        self.assertIn("p/q.rs:1 `use super::*`", rep.circles[0])

    def test_comments_and_strings_ignored(self) -> None:
        rep = self.crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\n",
            "b.rs": ("// use crate::a::A;\n/* crate::a::A /* nested */ */\n"
                     "pub struct B;\nconst S: &str = \"crate::a::A\";\n"
                     "const R: &str = r#\"crate::a::A\"#;\nfn f<'a>(x: &'a u8) -> char { 'x' }\n"),
        })
        self.assertEqual(rep.circles, [])

    def test_oversized_file(self) -> None:
        body = "\n".join(f"// {i}" for i in range(801)) + "\n"
        reason = "//! one concept: a table; splitting it scatters one match\n"
        rep = self.crate({
            "lib.rs": "pub mod big;\npub mod ok;\npub mod fine;\n",
            "big.rs": body,
            "ok.rs": reason + body,
            "fine.rs": "\n".join("//" for _ in range(800)) + "\n",
        }, {"c/tests/t.rs": body})
        self.assertEqual(rep.oversized, [
            'c/src/big.rs: 801 lines (over 800) without a "one concept:" reason in its first lines',
            'c/tests/t.rs: 801 lines (over 800) without a "one concept:" reason in its first lines',
        ])

    def test_reason_must_be_in_first_lines(self) -> None:
        body = "\n".join("//" for _ in range(20)) + "\n// one concept: late\n"
        body += "\n".join("//" for _ in range(800)) + "\n"
        rep = self.crate({"lib.rs": "mod late;\n", "late.rs": body})
        self.assertEqual(len(rep.oversized), 1)

    def test_clean_tree_exit_status(self) -> None:
        self.crate({"lib.rs": "pub mod a;\n", "a.rs": "pub struct A;\n"})
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["--root", str(self.root)])
        self.assertEqual(rc, 0)
        self.assertEqual(out.getvalue(), "layout: ok (1 crates, 2 files)\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
