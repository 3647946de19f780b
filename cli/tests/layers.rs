//! The CLI's modules form layers, bottom to top: `fleet` (and `clients`) →
//! `run` → `check` and the load engine → `faults` → `load` → `experiments` →
//! `report` → `commands`, `dashboard`, `main`. A module may use the layers
//! below it, never one above: these tests read `cli/src/**.rs` (without
//! their `#[cfg(test)]` parts, and without comments), build the graph of
//! top-level modules from every `crate::` path (and `super::` paths that
//! leave a top-level module), and fail naming any cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_two_top_level_modules_of_the_cli_depend_on_each_other() {
    let graph = graph(&sources(), 1);
    assert!(graph.len() >= 8, "too few modules read: {graph:?}");
    if let Some(cycle) = cycle(&graph) {
        panic!("module cycle in cli/src: {}", cycle.join(" → "));
    }
}

#[test]
fn no_two_modules_one_level_down_depend_on_each_other() {
    let graph = graph(&sources(), 2);
    assert!(graph.contains_key("load::closed"), "{graph:?}");
    if let Some(cycle) = cycle(&graph) {
        panic!("module cycle in cli/src: {}", cycle.join(" → "));
    }
}

#[test]
fn the_run_model_uses_nothing_above_the_fleet() {
    let graph = graph(&sources(), 1);
    let allowed: BTreeSet<&str> = ["fleet", "clients", "exit"].into();
    let above: Vec<&String> = graph
        .get("run")
        .expect("cli/src/run exists")
        .iter()
        .filter(|m| !allowed.contains(m.as_str()))
        .collect();
    assert!(above.is_empty(), "run reaches up into {above:?}");
}

#[test]
fn a_cycle_between_modules_is_found_and_named() {
    let files = [
        ("main.rs", "mod a; mod b; mod c; use crate::c::Z;"),
        ("a.rs", "use crate::b::X; // crate::c::Not (a comment)"),
        ("b/mod.rs", "pub mod inner;\npub fn f() {}"),
        ("b/inner.rs", "use crate::{c::{self, Y}, exit};"),
        ("c.rs", "pub fn g() { super::a::h() }"),
    ];
    let graph = graph(&files.map(|(p, t)| (PathBuf::from(p), t.to_owned())), 1);
    assert_eq!(graph["a"], ["b".to_owned()].into());
    assert_eq!(graph["b"], ["c".to_owned(), "exit".to_owned()].into());
    let cycle = cycle(&graph).expect("a → b → c → a is a cycle");
    assert_eq!(cycle.join(" → "), "a → b → c → a");
}

#[test]
fn a_cycle_one_level_down_is_found_through_super_paths() {
    let files = [
        ("load/mod.rs", "mod closed; mod target; use closed::run;"),
        ("load/closed.rs", "use super::target::{Conns, self};"),
        (
            "load/target.rs",
            "use crate::{load::{closed::REPLAYED as R}, run::Lab};\nfn f() { super::super::run::x() }",
        ),
    ];
    let graph = graph(&files.map(|(p, t)| (PathBuf::from(p), t.to_owned())), 2);
    assert_eq!(
        graph["load::target"],
        [
            "load::closed".to_owned(),
            "run::Lab".to_owned(),
            "run::x".to_owned()
        ]
        .into()
    );
    assert!(
        !graph.contains_key("load"),
        "a parent's edges to its children are not drawn"
    );
    let cycle = cycle(&graph).expect("closed → target → closed is a cycle");
    assert_eq!(
        cycle.join(" → "),
        "load::closed → load::target → load::closed"
    );
}

#[test]
fn code_only_a_test_uses_draws_no_edge() {
    let files = [
        ("a.rs", "use crate::b::X;"),
        (
            "b.rs",
            "pub struct X;\n#[cfg(test)]\nmod tests {\n    use crate::a::*;\n    const S: &str = \"}\";\n}\n#[cfg(test)]\nmod more;",
        ),
        ("b/more.rs", "use crate::a::Y;"),
        (
            "c.rs",
            "const S: &str = r#\"crate::a\"#; const C: char = '}';\nuse crate::b::X;",
        ),
    ];
    let graph = graph(&files.map(|(p, t)| (PathBuf::from(p), t.to_owned())), 1);
    assert!(!graph.contains_key("b"), "{graph:?}");
    assert_eq!(graph["c"], ["b".to_owned()].into());
    assert_eq!(cycle(&graph), None);
}

/// Every `.rs` file under `cli/src`, its path relative to `src`.
fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.strip_prefix(&root).unwrap().to_owned(), text));
            }
        }
    }
    out
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are `[a, b]`.
fn module_of(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "main") {
        parts.pop();
    }
    parts
}

/// The graph of modules `depth` deep (1: `load`; 2: `load::closed`), leaving
/// out files that are test modules. A module's edges to its own parent or
/// children are not drawn: only edges between siblings and cousins.
fn graph(files: &[(PathBuf, String)], depth: usize) -> Graph {
    let mut code = BTreeMap::new();
    let mut test_modules = BTreeSet::new();
    for (path, text) in files {
        let (kept, tests) = strip(text);
        let module = module_of(path);
        for t in tests {
            let mut m = module.clone();
            m.push(t);
            test_modules.insert(m);
        }
        code.insert(module, kept);
    }
    let mut graph = Graph::new();
    for (module, text) in &code {
        let in_tests = test_modules
            .iter()
            .any(|t| module.starts_with(t.as_slice()));
        if module.is_empty() || in_tests {
            continue;
        }
        let from = &module[..depth.min(module.len())];
        for path in uses(module, text) {
            let to = &path[..depth.min(path.len())];
            if !to.is_empty() && !to.starts_with(from) && !from.starts_with(to) {
                graph
                    .entry(from.join("::"))
                    .or_default()
                    .insert(to.join("::"));
            }
        }
    }
    graph
}

/// The paths from the crate root that `text` (of `module`) names: every
/// `crate::` path, each leaf of `crate::{x, y::{z, w}}`, and `super::` paths
/// resolved against `module`.
fn uses(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if i > 0 && text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        out.extend(tree(&[], &text[i + "crate::".len()..]).0);
    }
    for (i, _) in text.match_indices("super::") {
        if i > 0 && text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &text[i..];
        let mut up = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            up += 1;
            rest = r;
        }
        if let Some(base) = module.len().checked_sub(up).map(|n| &module[..n]) {
            out.extend(tree(base, rest).0);
        }
    }
    out
}

/// The paths a use-tree at the start of `s` names (`a::b`, `a::{b, c::d}`,
/// `a::{self, b}`), each after `prefix`, and how many bytes it took.
fn tree(prefix: &[String], s: &str) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    loop {
        i += blank(&s[i..]);
        if s[i..].starts_with('{') {
            i += 1;
            let mut out = Vec::new();
            loop {
                i += blank(&s[i..]);
                if s[i..].starts_with('}') || i >= s.len() {
                    return (out, i + 1);
                }
                let (paths, used) = tree(&path, &s[i..]);
                out.extend(paths);
                i += used;
                // Past a rename (`as x`) to the next item or the end.
                i += s[i..].find([',', '}']).unwrap_or(s.len() - i);
                if s[i..].starts_with(',') {
                    i += 1;
                }
            }
        }
        let id = ident(&s[i..]);
        i += id.len();
        let more = !id.is_empty() && s[i..].starts_with("::");
        if !id.is_empty() && id != "self" {
            path.push(id);
        }
        if !more {
            return (vec![path], i);
        }
        i += 2;
    }
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The length of the whitespace at the start of `s`.
fn blank(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// `text` without comments and without the items under `#[cfg(test)]`
/// (string and char literals are kept, blanked), and the names of the
/// test modules it declares in files of their own (`#[cfg(test)] mod x;`).
fn strip(text: &str) -> (String, Vec<String>) {
    let code = blank_comments(text);
    let mut kept = String::new();
    let mut tests = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        rest = &rest[at + "#[cfg(test)]".len()..];
        // The item: up to its `;` (a `mod x;`, a `use`) or its balanced braces.
        let semi = rest.find(';');
        let brace = rest.find('{');
        match (semi, brace) {
            (Some(s), b) if b.is_none_or(|b| s < b) => {
                let item = rest[..s].trim();
                if let Some(name) = item.rsplit_once("mod ").map(|(_, n)| n.trim()) {
                    tests.push(name.to_owned());
                }
                rest = &rest[s + 1..];
            }
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = rest.len();
                for (i, c) in rest[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
            }
            _ => rest = "",
        }
    }
    kept.push_str(rest);
    (kept, tests)
}

/// Comments removed; string and char literals' contents blanked (so a
/// brace or a path inside one counts for nothing).
fn blank_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(len) = raw_string(rest) {
            out.push_str("\"\"");
            i += len;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if let Some(len) = char_literal(rest) {
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`) at the start of `s`.
fn raw_string(s: &str) -> Option<usize> {
    let after_r = s.strip_prefix('r')?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(1 + hashes + 1 + end + close.len())
}

/// The length of a char literal (`'{'`, `'\n'`, `'\''`) at the start of `s`;
/// `None` for a lifetime (`'a`).
fn char_literal(s: &str) -> Option<usize> {
    let body = s.strip_prefix('\'')?;
    let mut chars = body.char_indices();
    let (_, first) = chars.next()?;
    let after = if first == '\\' {
        let (_, escaped) = chars.next()?;
        if escaped == 'u' {
            body.find('}')? + 1
        } else {
            1 + escaped.len_utf8()
        }
    } else {
        first.len_utf8()
    };
    body[after..].starts_with('\'').then_some(after + 2)
}

/// One cycle in `graph` (`a → b → a`), if there is any.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        seen: &mut BTreeMap<String, Seen>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        seen.insert(node.to_owned(), Seen::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match seen.get(next) {
                Some(Seen::Open) => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Seen::Done) => {}
                None => {
                    if let Some(c) = visit(next, graph, seen, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        seen.insert(node.to_owned(), Seen::Done);
        None
    }
    let mut seen = BTreeMap::new();
    for node in graph.keys() {
        if !seen.contains_key(node)
            && let Some(c) = visit(node, graph, &mut seen, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}
