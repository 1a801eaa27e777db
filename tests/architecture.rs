//! The rules of ARCHITECTURE.md that a machine can check: the top-level modules of `src/` import
//! each other without a cycle, and no source file is longer than about 800 lines (tests aside)
//! unless ARCHITECTURE.md's "Large files and why" names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod common;

/// Most lines of code (before a file's test module) a source file may have unless
/// ARCHITECTURE.md says why.
const MAX_LINES: usize = 800;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a source file that the rules are about: up to its inline test module, none of a
/// file that is a test module itself (`tests.rs`).
fn code_of(path: &Path) -> Option<String> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap();
    let end = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()
    .unwrap_or(text.len());
    Some(text[..end].to_string())
}

/// The top-level module a file of `src/` belongs to (`None` for the crate roots).
fn module_of(src: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level modules each module refers to as `crate::<module>`, outside comments, with
/// a file that does so for each edge.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for path in rust_files(src) {
        let (Some(from), Some(code)) = (module_of(src, &path), code_of(&path)) else {
            continue;
        };
        let edges = graph.entry(from.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let to: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !to.is_empty() && to != from {
                    edges.entry(to).or_insert_with(|| path.clone());
                }
            }
        }
    }
    graph
}

/// A cycle of the graph, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let src = common::repo().join("src");
    let graph = module_graph(&src);
    assert!(
        graph.get("stats").is_none_or(|e| e.is_empty()),
        "stats imports nothing else from the crate: {:?}",
        graph["stats"]
    );
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]].display()))
            .collect();
        panic!("import cycle among src/ modules:\n{}", edges.join("\n"));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let edge = |to: &str| (to.to_string(), PathBuf::from("x.rs"));
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeMap::from([edge("b")]));
    graph.insert("b".to_string(), BTreeMap::from([edge("c")]));
    graph.insert("c".to_string(), BTreeMap::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().extend([edge("a")]);
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn long_source_files_are_the_ones_architecture_md_explains() {
    let repo = common::repo();
    let arch = std::fs::read_to_string(repo.join("ARCHITECTURE.md")).unwrap();
    let start = arch
        .find("Large files and why")
        .expect("ARCHITECTURE.md has its list of large files");
    let explained = &arch[start..start + arch[start..].find("\n\n").unwrap()];
    let src = repo.join("src");
    let mut unexplained = Vec::new();
    for path in rust_files(&src) {
        let Some(code) = code_of(&path) else {
            continue;
        };
        let lines = code.lines().count();
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if lines > MAX_LINES && !explained.contains(&format!("`{rel}`")) {
            unexplained.push(format!("src/{rel}: {lines} lines"));
        }
    }
    assert!(
        unexplained.is_empty(),
        "over {MAX_LINES} lines without a reason in ARCHITECTURE.md:\n{}",
        unexplained.join("\n")
    );
}
