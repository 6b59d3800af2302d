//! No module imports a module that imports it back: the `crate::`/`super::` import graph
//! of every crate's `src/` has no cycle.
//!
//! The check reads the sources, not the compiler's view: each file (and each inline
//! `mod name { .. }`) is a module; every path that starts with `crate::`, `super::` or
//! `self::` (in `use` items, `{..}` groups expanded, and in expressions and types) names
//! the deepest module it reaches. A reference between two modules is an edge between the
//! two siblings under their deepest common ancestor: `crate::executor::bolt` using
//! `crate::runtime::StopHandle` is the edge `executor -> runtime` among the crate root's
//! modules, `bridge::inbound` using `super::remote` is `inbound -> remote` inside
//! `bridge`. References between a module and its own ancestors or descendants (a child
//! using its parent's items, `use super::*` in tests) are not edges: they are how a
//! module is built from its parts. Among each module's children the edges must form a
//! DAG, so the modules of a crate can be read bottom-up.
//!
//! Between crates, the component crates (built-in spouts, bolts, multilang, the Redis
//! connector) stand side by side: none depends on another, so a connector's spout and
//! sink share code inside its own crate, not through another component crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["executor", "bolt"]`.
type ModPath = Vec<String>;

/// One reference from a module to another, with where it was found.
#[derive(Debug, Clone)]
struct Edge {
    file: String,
    line: usize,
    path: String,
}

/// Every crate source folder of the workspace: `src/` of the root package and of each
/// member folder that has one.
fn crate_sources(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("src")];
    let mut members: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("the repository root is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
        .collect();
    members.sort();
    dirs.extend(members.into_iter().map(|p| p.join("src")));
    dirs
}

/// Every `.rs` file under `src` as (module path, file).
fn module_files(src: &Path) -> Vec<(ModPath, PathBuf)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(ModPath, PathBuf)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if p.is_dir() {
                // `src/bin/` holds separate crates.
                if !(prefix.is_empty() && name == "bin") {
                    let mut sub = prefix.to_vec();
                    sub.push(name);
                    walk(&p, &sub, out);
                }
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.to_vec();
                if !(matches!(stem, "lib" | "main") && prefix.is_empty() || stem == "mod") {
                    m.push(stem.to_owned());
                }
                out.push((m, p));
            }
        }
    }
    let mut out = Vec::new();
    walk(src, &[], &mut out);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    Path,
}

/// Tokens of `text` with their line numbers; comments, strings and character literals
/// are dropped.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines = |from: usize, to: usize, line: &mut usize| {
        *line += c[from..to.min(c.len())]
            .iter()
            .filter(|&&ch| ch == '\n')
            .count();
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            count_lines(start, i, &mut line);
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && next == Some('"')) {
            let start = i;
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            count_lines(start, i, &mut line);
        } else if (ch == 'r' || (ch == 'b' && next == Some('r')))
            && matches!(
                c.get(i + if ch == 'r' { 1 } else { 2 }),
                Some('"') | Some('#')
            )
        {
            // A raw string: r"..", r#".."#, br"..".
            let start = i;
            i += if ch == 'r' { 1 } else { 2 };
            let mut hashes = 0;
            while c.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            if c.get(i) != Some(&'"') {
                // `r#ident`, a raw identifier.
                let s = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(c[s..i].iter().collect()), line));
                continue;
            }
            i += 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            count_lines(start, i, &mut line);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch == ':' && next == Some(':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The paths a path expression starting at `toks[i]` (just after its first segment)
/// names, each as segments after that first one; `i` ends after the path.
fn path_tails(toks: &[(Tok, usize)], i: &mut usize) -> Vec<Vec<String>> {
    let mut tails = vec![Vec::new()];
    while toks.get(*i).map(|t| &t.0) == Some(&Tok::Path) {
        *i += 1;
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(name)) => {
                for t in &mut tails {
                    t.push(name.clone());
                }
                *i += 1;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                let mut group = Vec::new();
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        Some(Tok::Ident(name)) => {
                            let name = name.clone();
                            *i += 1;
                            let inner = path_tails(toks, i);
                            // `self` in a group names the prefix itself.
                            group.extend(inner.into_iter().map(|mut t| {
                                if name != "self" {
                                    t.insert(0, name.clone());
                                }
                                t
                            }));
                            // `as alias`
                            if toks.get(*i).map(|t| &t.0) == Some(&Tok::Ident("as".into())) {
                                *i += 2;
                            }
                        }
                        Some(Tok::Punct('*')) => *i += 1,
                        None => break,
                        Some(_) => *i += 1,
                    }
                }
                if group.is_empty() {
                    group.push(Vec::new());
                }
                tails = tails
                    .iter()
                    .flat_map(|t| {
                        group.iter().map(move |g| {
                            let mut full = t.clone();
                            full.extend(g.iter().cloned());
                            full
                        })
                    })
                    .collect();
                return tails;
            }
            _ => return tails,
        }
    }
    tails
}

/// The module references of one file, as (from module, to path, line, text).
fn references(file_mod: &ModPath, text: &str) -> Vec<(ModPath, ModPath, usize, String)> {
    let toks = lex(text);
    let mut out = Vec::new();
    // Inline modules: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here = || {
            let mut m = file_mod.clone();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(kw)
                if matches!(kw.as_str(), "crate" | "super" | "self")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                    && !(i > 0 && matches!(toks[i - 1].0, Tok::Path | Tok::Punct('$'))) =>
            {
                let line = toks[i].1;
                let from = here();
                let mut base: ModPath = match kw.as_str() {
                    "crate" => Vec::new(),
                    _ => from.clone(),
                };
                // `super::super::x`
                let mut j = i;
                while let (Some((Tok::Ident(k), _)), Some((Tok::Path, _))) =
                    (toks.get(j), toks.get(j + 1))
                {
                    match k.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" | "crate" if j == i => {}
                        _ => break,
                    }
                    j += 2;
                }
                // `j` is at the first segment after the keywords: parse from the `::`
                // before it.
                let mut k = j - 1;
                let tails = path_tails(&toks, &mut k);
                for t in tails {
                    let mut to = base.clone();
                    to.extend(t);
                    let text = format!("crate::{}", to.join("::"));
                    out.push((from.clone(), to, line, text));
                }
                i = k.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// The import-cycle problems of the crate whose sources are `files` (relative names for
/// messages, module path, text): one line per cycle, naming its modules and the
/// reference behind each edge.
fn cycles(krate: &str, files: &[(String, ModPath, String)]) -> Vec<String> {
    // Every module the files declare, inline ones included.
    let mut modules: BTreeSet<ModPath> = files.iter().map(|(_, m, _)| m.clone()).collect();
    let mut refs = Vec::new();
    for (name, m, text) in files {
        for (from, to, line, path) in references(m, text) {
            modules.insert(from.clone());
            refs.push((name.clone(), from, to, line, path));
        }
    }
    // Parent module -> (child a -> child b -> first reference).
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Edge>>> = BTreeMap::new();
    for (file, from, to, line, path) in refs {
        // The deepest module the path reaches (the rest names an item).
        let to: ModPath = (0..=to.len())
            .rev()
            .map(|n| to[..n].to_vec())
            .find(|p| modules.contains(p))
            .unwrap_or_default();
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue;
        }
        graphs
            .entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .entry(to[common].clone())
            .or_insert(Edge { file, line, path });
    }
    let mut problems = Vec::new();
    for (parent, graph) in &graphs {
        for cycle in find_cycles(graph) {
            let scope = if parent.is_empty() {
                krate.to_owned()
            } else {
                format!("{krate}::{}", parent.join("::"))
            };
            let why: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let e = &graph[&w[0]][&w[1]];
                    format!("{}:{} uses {}", e.file, e.line, e.path)
                })
                .collect();
            problems.push(format!(
                "import cycle in {scope}: {} ({})",
                cycle.join(" -> "),
                why.join("; ")
            ));
        }
    }
    problems
}

/// One cycle per strongly connected component of more than one node (or a self loop),
/// each as its nodes with the first repeated at the end.
fn find_cycles(graph: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        // Depth-first, keeping the current path; a back edge closes a cycle.
        let mut path: Vec<String> = Vec::new();
        let mut on_path: BTreeSet<String> = BTreeSet::new();
        fn visit(
            n: &str,
            graph: &BTreeMap<String, BTreeMap<String, Edge>>,
            path: &mut Vec<String>,
            on_path: &mut BTreeSet<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<Vec<String>>,
        ) {
            path.push(n.to_owned());
            on_path.insert(n.to_owned());
            for next in graph.get(n).into_iter().flat_map(|e| e.keys()) {
                if on_path.contains(next) {
                    let at = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut cycle = path[at..].to_vec();
                    cycle.push(next.clone());
                    found.push(cycle);
                } else if !done.contains(next) {
                    visit(next, graph, path, on_path, done, found);
                }
            }
            path.pop();
            on_path.remove(n);
            done.insert(n.to_owned());
        }
        visit(start, graph, &mut path, &mut on_path, &mut done, &mut found);
    }
    found
}

/// The problems of the crate in `src` (file names relative to `root`).
fn check_crate(root: &Path, src: &Path) -> Vec<String> {
    let krate = src
        .parent()
        .and_then(|p| p.strip_prefix(root).ok())
        .map(|p| p.display().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "topo".into());
    let files: Vec<(String, ModPath, String)> = module_files(src)
        .into_iter()
        .map(|(m, p)| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let name = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            (name, m, text)
        })
        .collect();
    cycles(&krate, &files)
}

#[test]
fn no_module_of_any_crate_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = crate_sources(root);
    assert!(
        sources.iter().any(|s| s.ends_with("engine/src")),
        "the engine crate is found: {sources:?}"
    );
    let problems: Vec<String> = sources.iter().flat_map(|s| check_crate(root, s)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The crates that register components, each on its own beside the others.
const COMPONENT_CRATES: [&str; 4] = ["spouts", "bolts", "multilang", "redis"];

#[test]
fn no_component_crate_depends_on_another() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names: Vec<String> = COMPONENT_CRATES
        .iter()
        .map(|dir| {
            let text = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{dir}/Cargo.toml: {e}"));
            let manifest: toml::Table = text.parse().expect("a TOML manifest");
            manifest["package"]["name"]
                .as_str()
                .expect("a package name")
                .to_string()
        })
        .collect();
    let mut found = Vec::new();
    for dir in COMPONENT_CRATES {
        let text = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).expect("manifest");
        let manifest: toml::Table = text.parse().expect("a TOML manifest");
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for name in deps.keys().filter(|k| names.contains(k)) {
                found.push(format!("{dir}/Cargo.toml [{section}] {name}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "component crates depend on each other: {found:?}"
    );
}

fn file(name: &str, module: &[&str], text: &str) -> (String, ModPath, String) {
    (
        name.to_owned(),
        module.iter().map(|s| s.to_string()).collect(),
        text.to_owned(),
    )
}

#[test]
fn the_check_names_a_cycle_between_two_modules_and_the_references_behind_it() {
    let files = [
        file("src/lib.rs", &[], "mod runtime;\nmod executor;\n"),
        file(
            "src/runtime.rs",
            &["runtime"],
            "//! Runtime.\nuse crate::executor::bolt::Bolt;\npub struct StopHandle;\n",
        ),
        file("src/executor/mod.rs", &["executor"], "pub mod bolt;\n"),
        file(
            "src/executor/bolt.rs",
            &["executor", "bolt"],
            "pub struct Bolt;\n\nfn f(_: crate::runtime::StopHandle) {}\n",
        ),
    ];
    assert_eq!(
        cycles("engine", &files),
        ["import cycle in engine: executor -> runtime -> executor \
          (src/executor/bolt.rs:3 uses crate::runtime::StopHandle; \
          src/runtime.rs:2 uses crate::executor::bolt::Bolt)"]
    );
}

#[test]
fn the_check_finds_cycles_through_groups_super_and_nested_modules() {
    let files = [
        file("src/lib.rs", &[], ""),
        file(
            "src/bridge/inbound.rs",
            &["bridge", "inbound"],
            "use super::{remote::{self, Remote}, other};\n",
        ),
        file(
            "src/bridge/remote.rs",
            &["bridge", "remote"],
            "use super::super::bridge::{inbound::Dispatcher};\n",
        ),
        file("src/bridge/mod.rs", &["bridge"], "mod inbound; mod remote;"),
        // Not edges: a string, a comment, a parent, a test module's `super::*`.
        file(
            "src/wire.rs",
            &["wire"],
            "// crate::bridge::x\nconst S: &str = \"crate::bridge::y\";\nuse crate::Foo;\n\
             mod tests { use super::*; use crate::wire::Bar; }\n",
        ),
    ];
    assert_eq!(
        cycles("engine", &files),
        [
            "import cycle in engine::bridge: inbound -> remote -> inbound \
          (src/bridge/inbound.rs:1 uses crate::bridge::remote; \
          src/bridge/remote.rs:1 uses crate::bridge::inbound::Dispatcher)"
        ]
    );
}

#[test]
fn a_layered_crate_passes_the_check() {
    let files = [
        file("src/lib.rs", &[], "pub use crate::runtime::start;"),
        file("src/tuple.rs", &["tuple"], "pub struct Tuple;"),
        file(
            "src/wire/mod.rs",
            &["wire"],
            "mod encode; use crate::tuple::Tuple; pub use encode::e;",
        ),
        file(
            "src/wire/encode.rs",
            &["wire", "encode"],
            "use super::WireError; use crate::tuple::Tuple; fn t(_: &'static str) -> char { 'x' }",
        ),
        file(
            "src/runtime.rs",
            &["runtime"],
            "use crate::{tuple::Tuple, wire::{self, encode}};",
        ),
    ];
    assert_eq!(cycles("engine", &files), Vec::<String>::new());
}
