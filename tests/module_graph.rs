//! The library's modules form a layered graph: no two modules import each other, directly or
//! through others. A cycle means a type lives in the wrong module.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// `crate::<module>` references of every top-level library module (`src/*.rs`).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || matches!(name, "lib" | "main") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        // Test modules may reach anywhere; only the library code counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut used = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            // `crate::{a, b::C}` names several modules at once.
            let heads: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for head in heads {
                let module: String = head
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() && module != name {
                    used.insert(module);
                }
            }
        }
        graph.insert(name.to_string(), used);
    }
    graph
}

#[test]
fn library_modules_have_no_import_cycle() {
    let graph = imports();
    assert!(graph.contains_key("job") && graph.contains_key("waves"));
    // Depth-first search; a module met again while still on the stack closes a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), String> {
        if let Some(at) = stack.iter().position(|s| *s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m);
            return Err(cycle.join(" -> "));
        }
        if !done.insert(m) {
            return Ok(());
        }
        stack.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, stack, done)?;
            }
        }
        stack.pop();
        Ok(())
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Err(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("module import cycle: {cycle}");
        }
    }
}
