//! The shape of the source tree, held in place: the module graph has no cycle, the command
//! layer is a leaf (only `cli` reaches it), and no domain module reaches `command` or `cli`.
//!
//! The graph is read from the source text: every `crate::a::b` path (in `use` items and
//! inline) is an edge from the file's module to the deepest module it names. Edges between
//! a module and its own ancestors are ignored (a parent re-exporting a child, a child using
//! its parent's error type); every other edge is lifted to the two siblings under the
//! deepest common ancestor, and each sibling graph must be acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, `["sops", "rules", "plan"]`; the crate root is `[]`.
type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` with its module path.
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            let stem = path.file_stem().expect("stem").to_string_lossy().into_owned();
            if path.is_dir() {
                let mut m = prefix.clone();
                m.push(stem);
                walk(&path, &m, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut m = prefix.clone();
                if !matches!(stem.as_str(), "mod" | "lib" | "main") {
                    m.push(stem);
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                out.entry(m).or_default().push_str(&text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &Vec::new(), &mut out);
    out
}

/// The module paths named in `text` of module `at`: `crate::…` and `super::…` (the file's
/// parent), with `use crate::{a, b::{c, d}}` groups expanded one level (enough to reach the
/// module each names). A file's inline test module (`#[cfg(test)] mod tests {`, last in every
/// file, as clippy's `items_after_test_module` demands) is left out: it says `super::` about
/// the file itself.
fn crate_paths(at: &[String], text: &str) -> Vec<Vec<String>> {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let parent = &at[..at.len().saturating_sub(1)];
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(['c', 's']) {
        let root = if rest[i..].starts_with("crate::") {
            Vec::new()
        } else if rest[i..].starts_with("super::") {
            parent.to_vec()
        } else {
            rest = &rest[i + 1..];
            continue;
        };
        let boundary = rest[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'));
        rest = &rest[i + "crate::".len()..];
        if !boundary {
            continue;
        }
        let mut path = root;
        let mut s = rest;
        loop {
            let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
            if end == 0 {
                break;
            }
            path.push(s[..end].to_owned());
            s = &s[end..];
            if let Some(next) = s.strip_prefix("::") {
                s = next;
            } else {
                break;
            }
        }
        if s.starts_with('{') {
            let close = s.find('}').unwrap_or(s.len());
            for part in s[1..close].split(',') {
                let mut p = path.clone();
                p.extend(part.split("::").map(|x| x.trim().to_owned()).take_while(|x| !x.is_empty() && x != "{" && x != "self"));
                out.push(p);
            }
        } else {
            out.push(path);
        }
    }
    out
}

/// Edges between whole modules: file module → deepest existing module the path names.
fn edges() -> BTreeSet<(Module, Module)> {
    let mods = modules();
    let mut out = BTreeSet::new();
    for (from, text) in &mods {
        for path in crate_paths(from, text) {
            let to = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| mods.contains_key(m)).unwrap_or_default();
            let related = from.starts_with(&to) || to.starts_with(from);
            if !related {
                out.insert((from.clone(), to));
            }
        }
    }
    out
}

/// Lifts an edge to the two siblings under the deepest common ancestor.
fn lift(from: &Module, to: &Module) -> (Module, Module) {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    (from[..=common].to_vec(), to[..=common].to_vec())
}

fn name(m: &Module) -> String {
    if m.is_empty() { "crate".to_owned() } else { m.join("::") }
}

/// The sibling graph: lifted edges, each with the file-level edges that make it.
fn sibling_graph() -> BTreeMap<(Module, Module), Vec<String>> {
    let mut graph: BTreeMap<(Module, Module), Vec<String>> = BTreeMap::new();
    for (from, to) in edges() {
        let lifted = lift(&from, &to);
        graph.entry(lifted).or_default().push(format!("{} -> {}", name(&from), name(&to)));
    }
    graph
}

/// The strongly connected components of more than one module: each is a set of modules
/// that reach one another, so each holds at least one cycle.
fn cycles(graph: &BTreeMap<(Module, Module), Vec<String>>) -> Vec<Vec<Module>> {
    let mut next: BTreeMap<&Module, BTreeSet<&Module>> = BTreeMap::new();
    for (a, b) in graph.keys() {
        next.entry(a).or_default().insert(b);
    }
    let reach = |from: &Module| {
        let mut seen: BTreeSet<&Module> = BTreeSet::new();
        let mut todo: Vec<&Module> = next.get(from).into_iter().flatten().copied().collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m) {
                todo.extend(next.get(m).into_iter().flatten().copied());
            }
        }
        seen
    };
    let reached: BTreeMap<&Module, BTreeSet<&Module>> = next.keys().map(|m| (*m, reach(m))).collect();
    let mut out: Vec<Vec<Module>> = Vec::new();
    for (m, r) in &reached {
        if !r.contains(m) || out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let comp = r.iter().filter(|o| reached.get(*o).is_some_and(|back| back.contains(m))).map(|o| (*o).clone()).collect();
        out.push(comp);
    }
    out
}

#[test]
fn the_scanner_sees_the_edges_it_must() {
    // The scanner itself is tested against shapes that occur in the tree, so that a guard
    // that sees nothing cannot pass by accident.
    let at = vec!["sops".to_owned(), "rules".to_owned()];
    let paths = crate_paths(
        &at,
        "use crate::error::{Error, Result};\nuse crate::sops::{rules::Rules, file};\nlet x = crate::fleet::Fleet::open();\n// crate::cli is a comment\nuse super::yaml::Node;\n#[cfg(test)]\nmod tests {\nuse crate::cli;",
    );
    assert_eq!(
        paths,
        vec![
            vec!["error".to_owned(), "Error".to_owned()],
            vec!["error".to_owned(), "Result".to_owned()],
            vec!["sops".to_owned(), "rules".to_owned(), "Rules".to_owned()],
            vec!["sops".to_owned(), "file".to_owned()],
            vec!["fleet".to_owned(), "Fleet".to_owned(), "open".to_owned()],
            vec!["sops".to_owned(), "yaml".to_owned(), "Node".to_owned()],
        ]
    );
    assert!(edges().iter().any(|(from, to)| name(from) == "cli" && name(to) == "command"), "cli -> command must be seen");
    let mut toy = BTreeMap::new();
    toy.insert((vec!["a".to_owned()], vec!["b".to_owned()]), vec![]);
    toy.insert((vec!["b".to_owned()], vec!["a".to_owned()]), vec![]);
    assert_eq!(cycles(&toy).len(), 1, "a two-module cycle must be found");
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = sibling_graph();
    let mut why = String::new();
    for comp in cycles(&graph) {
        let names: Vec<_> = comp.iter().map(name).collect();
        why.push_str(&format!("\ncycle among {}; made by:", names.join(", ")));
        for ((a, b), files) in &graph {
            if comp.contains(a) && comp.contains(b) {
                for e in files {
                    why.push_str(&format!("\n  {e}"));
                }
            }
        }
    }
    assert!(why.is_empty(), "the module graph must be acyclic:{why}");
}

#[test]
fn only_the_cli_reaches_the_command_layer() {
    let mut wrong = Vec::new();
    for (from, to) in edges() {
        let from_layer = from.first().map_or("crate", String::as_str);
        let to_layer = to.first().map_or("crate", String::as_str);
        let allowed = match to_layer {
            "command" => matches!(from_layer, "cli" | "command"),
            "cli" => false,
            _ => true,
        };
        if !allowed {
            wrong.push(format!("{} -> {}", name(&from), name(&to)));
        }
    }
    assert!(wrong.is_empty(), "only `cli` may use `command`, and nothing may use `cli`:\n  {}", wrong.join("\n  "));
}

/// `cargo test module_graph -- --ignored --nocapture` prints the top-level graph.
#[test]
#[ignore = "prints the module graph; run by hand"]
fn module_graph() {
    let mut lines = BTreeSet::new();
    for (from, to) in edges() {
        let (a, b) = (from.first().cloned().unwrap_or_default(), to.first().cloned().unwrap_or_default());
        if a != b && !a.is_empty() && !b.is_empty() {
            lines.insert(format!("{a} -> {b}"));
        }
    }
    for (a, b) in sibling_graph().keys() {
        if a.len() > 1 {
            lines.insert(format!("{} -> {}", name(a), name(b)));
        }
    }
    for l in lines {
        println!("{l}");
    }
}
