//! Rules about the code itself, checked like rust-analyzer's tidy tests:
//! the stage modules own their settings and do not import `config` (which
//! composes them); the modules import each other without loops; no
//! function runs over 150 lines; query results are read through their row
//! types; and every source file opens with a `//!` paragraph on its job.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The stage folders define their own settings types (`lake::lease::
/// LeaseSettings`, `deliver::mail::RawMail`, `deliver::webhook::Webhook`,
/// `report::focus::RawFocus`, `reconcile::Settings`, `anomaly::Settings`);
/// `config` reads the file and composes them, never the other way round.
#[test]
fn stage_modules_do_not_import_config() {
    let mut found = Vec::new();
    for stage in [
        "lake",
        "deliver",
        "reconcile",
        "anomaly",
        "budget",
        "report",
    ] {
        for file in rust_files(&src().join(stage)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("crate::config") {
                    found.push(format!(
                        "{}:{}: {}",
                        file.strip_prefix(src()).unwrap().display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "stage modules import config (define the settings type beside the stage and let config compose it):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let missing: Vec<String> = rust_files(&src())
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(src()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! opening: {missing:?}"
    );
}

/// A source file's code: comments and `#[cfg(test)] mod tests { ... }`
/// blocks left out (the `tests.rs` files of a module are left out whole).
fn code_of(file: &Path) -> Vec<(usize, String)> {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|(_, next)| next.trim_start().starts_with("mod tests"))
        {
            // A test module runs to the end of the file in this code base.
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push((i + 1, code.to_string()));
    }
    out
}

/// The top-level module a source file belongs to (`src/lake/scan.rs`: `lake`).
fn top_module(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Which top-level modules each one's code names (`crate::x`).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in rust_files(&src()) {
        let from = top_module(&file);
        if from == "main" || from == "lib" {
            continue;
        }
        let deps = graph.entry(from.clone()).or_default();
        for (_, code) in code_of(&file) {
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != from {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// The modules form a layered graph: no module reaches back to one that
/// depends on it (`config` composes the stages' settings, `history` is
/// data the pipeline loads, `report` formats what `anomaly` detects). A
/// loop found is named module by module.
#[test]
fn modules_import_each_other_without_loops() {
    let graph = module_graph();
    fn visit(
        at: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
        loops: &mut Vec<String>,
    ) {
        if let Some(pos) = path.iter().position(|p| p == at) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(at.to_string());
            loops.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(at.to_string()) {
            return;
        }
        path.push(at.to_string());
        for next in graph.get(at).into_iter().flatten() {
            visit(next, graph, path, done, loops);
        }
        path.pop();
    }
    let mut loops = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done, &mut loops);
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
    // The graph is what the rule says, not empty by a parsing slip.
    assert!(graph["pipeline"].contains("queries"), "{graph:?}");
    assert!(graph["report"].contains("anomaly"), "{graph:?}");
    assert!(!graph["anomaly"].contains("report"), "{graph:?}");
    assert!(graph["report"].contains("budget"), "{graph:?}");
    assert!(!graph["budget"].contains("report"), "{graph:?}");
    assert!(!graph["history"].contains("lake"), "{graph:?}");
}

/// No function in `src/` (tests aside) runs over 150 lines: a newcomer
/// reads a stage as named steps.
#[test]
fn no_function_is_longer_than_150_lines() {
    const MAX: usize = 150;
    let mut long = Vec::new();
    for file in rust_files(&src()) {
        let code = code_of(&file);
        for (k, (line_no, line)) in code.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let head = trimmed
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("const ")
                .trim_start_matches("async ");
            if !head.starts_with("fn ") || line.trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            if let Some(end) = code[k + 1..].iter().position(|(_, l)| *l == close) {
                let lines = end + 2;
                if lines > MAX {
                    let name: String = head[3..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    long.push(format!(
                        "{}:{line_no}: fn {name} is {lines} lines",
                        file.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}

/// Query outputs are read through their row types (`queries::rows`):
/// nothing looks a result up by name, and only the lake (mapping input
/// columns, before any SQL) reads batch columns by name.
#[test]
fn query_results_are_read_through_their_row_types() {
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        for (line_no, code) in code_of(&file) {
            let by_name = code.contains("column_by_name(") && !rel.starts_with("lake/");
            if code.contains("results.get(") || by_name {
                found.push(format!("{rel}:{line_no}: {}", code.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "query results read by name (declare the columns in queries::rows):\n{}",
        found.join("\n")
    );
}
