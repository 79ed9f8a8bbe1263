//! The engine's folders form layers, and a folder imports only from the
//! layers below it (issue #24): no import circle across folders, so each
//! folder can be read, tested and changed knowing only what lies under it.
//!
//! This test reads `engine/src` and fails on an import that runs upward
//! or sideways, naming the file and line. A new folder must be given its
//! place in [`LAYERS`]. (The 34-file circle across 9 folders found in
//! review was undone by moving code, never by an exception here.)
//!
//! Run alone: `cargo test -p ringway --test layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A folder may import from any folder of a lower line,
/// not from its own line's other folders or a higher one.
const LAYERS: &[&[&str]] = &[
    // Each stands alone: panics caught and restarted, weighted choice and
    // hashing, the SSE codec.
    &["supervise", "balance", "sse"],
    // Deadlines and the wheel that fires them, the process clock.
    &["timer"],
    // Client and upstream stream types, socket helpers.
    &["net"],
    // The configuration file's model: parsing, `${VAR}`, field paths and
    // errors, bounds. Nothing compiled.
    &["config"],
    // The HTTP/1.1 codec, variables and expressions (sans IO).
    &["http"],
    // The LLM wire formats (sans IO): JSON body scan and splice,
    // conversions between formats, usage and answer text.
    &["wire"],
    // One request's exchange: its context, the client connection, body
    // reading, replies, the proxy error, reading and relaying answers.
    &["exchange"],
    // Upstream connections: endpoints and DNS, pools, TLS, one-shot calls.
    &["upstream"],
    // One worker's lane: settings, head limits, pool, busy polling.
    &["lane"],
    // Metrics, log lines and entries, redaction.
    &["observe"],
    // The Redis client budgets are shared through.
    &["redis"],
    // Provider endpoints, auth and token sources.
    &["providers"],
    &["health"],
    // Logger sinks (HTTP, Kafka).
    &["loggers"],
    &["router"],
    &["plugins"],
    // Plain HTTP forwarding.
    &["proxy"],
    // Compiling a configuration into the snapshot workers serve from.
    &["snapshot"],
    // Where the configuration comes from (file and its reloads, the
    // Admin API's saved changes), and the one door changes go through.
    &["source"],
    // Operators' listeners: the Admin API, metrics (and status).
    &["admin", "status"],
    // Workers, listeners, the connection loop, the process.
    &["server"],
];

#[derive(Debug)]
struct Import {
    from: String,
    to: String,
    at: String,
}

#[test]
fn every_folder_imports_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut rank = BTreeMap::new();
    for (i, line) in LAYERS.iter().enumerate() {
        for folder in line.iter() {
            assert!(
                rank.insert(*folder, i).is_none(),
                "{folder} is in two layers"
            );
        }
    }
    let folders = folders(&src);
    let unplaced: Vec<_> = folders
        .iter()
        .filter(|f| !rank.contains_key(f.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "folders without a layer in LAYERS: {unplaced:?}"
    );

    let mut imports = Vec::new();
    for folder in &folders {
        for file in rust_files(&src.join(folder)) {
            imports.extend(cross_folder_imports(&src, &file, &folders));
        }
    }
    assert!(
        imports.len() > 100,
        "the scan finds the imports ({} found)",
        imports.len()
    );

    let wrong: Vec<String> = imports
        .iter()
        .filter(|i| rank[i.to.as_str()] >= rank[i.from.as_str()])
        .map(|i| format!("  {} imports {} ({})", i.from, i.to, i.at))
        .collect();
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways across layers (tests/layers.rs lists the layers):\n{}",
        wrong.join("\n")
    );
    let pairs: BTreeSet<_> = imports.iter().map(|i| (&i.from, &i.to)).collect();
    println!(
        "{} cross-folder imports ({} folder pairs) among {} folders in {} layers, all downward",
        imports.len(),
        pairs.len(),
        folders.len(),
        LAYERS.len()
    );
}

/// `lib.rs`'s "Where things live" table names every folder at its layer,
/// so a newcomer can trust it.
#[test]
fn the_map_in_lib_rs_matches_the_layers() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let mut mapped: Vec<(usize, String)> = Vec::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(layer), Some(folders)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Ok(layer) = layer.trim().parse::<usize>() else {
            continue;
        };
        for name in folders.split(", ") {
            let name = name.trim().trim_start_matches("[`").trim_end_matches("`]");
            mapped.push((layer, name.to_owned()));
        }
    }
    let expected: Vec<(usize, String)> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, line)| line.iter().map(move |f| (i + 1, f.to_string())))
        .collect();
    assert_eq!(mapped, expected, "lib.rs's table and LAYERS disagree");
}

#[test]
fn the_scan_resolves_crate_super_and_grouped_paths() {
    let folders: Vec<String> = ["config", "http", "net", "plugins", "server"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let targets = |file: &str, text: &str| -> Vec<String> {
        let module = module_path(Path::new(file));
        let code: String = text
            .lines()
            .map(|l| format!("{}\n", strip_comment(l)))
            .collect();
        let mut out: Vec<String> = code_targets(&module, &code, &folders)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        out.sort();
        out.dedup();
        out
    };
    assert_eq!(
        targets("server/conn.rs", "use crate::http::RequestHead;"),
        ["http"]
    );
    assert_eq!(
        targets("server/conn.rs", "use crate::{config::Snapshot, plugins};"),
        ["config", "plugins"]
    );
    assert_eq!(
        targets(
            "server/conn.rs",
            "use crate::{\n    config::{Snapshot, X},\n    http,\n    net::{self, Io},\n};"
        ),
        ["config", "http", "net"],
        "a group over several lines, nested groups"
    );
    assert_eq!(
        targets("plugins/mod.rs", "use super::{config, http::X};"),
        ["config", "http"]
    );
    assert_eq!(
        targets("server/conn.rs", "use notcrate::http::X;"),
        Vec::<String>::new()
    );
    // `super` in a folder's mod.rs is the crate root.
    assert_eq!(
        targets("plugins/mod.rs", "use super::config::X;"),
        ["config"]
    );
    assert_eq!(
        targets("plugins/key_auth/mod.rs", "use super::Flow;"),
        Vec::<String>::new()
    );
    assert_eq!(
        targets("plugins/key_auth/mod.rs", "use super::super::http::X;"),
        ["http"]
    );
    assert_eq!(
        targets("server/conn.rs", "use super::ctx::RequestCtx;"),
        Vec::<String>::new()
    );
    assert_eq!(
        targets("server/conn.rs", "// see crate::plugins"),
        Vec::<String>::new()
    );
    assert_eq!(
        targets("server/conn.rs", "/// [`crate::plugins`]"),
        Vec::<String>::new()
    );
    assert_eq!(
        targets(
            "server/conn.rs",
            "let x = crate::plugins::run(); // crate::http"
        ),
        ["plugins"]
    );
    assert_eq!(
        targets("server/conn.rs", r#"let s = "crate::http";"#),
        ["http"],
        "strings are not told apart (none names a folder today)"
    );
}

fn folders(src: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src)
        .expect("engine/src")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("a source folder").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file under `src` (`server/conn.rs` → server,
/// conn; `plugins/mod.rs` → plugins).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The imports of other folders in one file, outside its unit tests (a
/// `#[cfg(test)] mod tests { … }` is skipped to its closing brace, which
/// rustfmt puts alone at the start of a line; tests may use anything).
fn cross_folder_imports(src: &Path, file: &Path, folders: &[String]) -> Vec<Import> {
    let rel = file.strip_prefix(src).expect("under src");
    let module = module_path(rel);
    let text = std::fs::read_to_string(file).expect("a source file");
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    let mut in_tests = false;
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                let next = next.strip_prefix("pub(crate) ").unwrap_or(next);
                next.starts_with("mod tests {")
            })
        {
            in_tests = true;
        } else if in_tests && line == "}" {
            in_tests = false;
        } else if !in_tests {
            code.push_str(strip_comment(line));
        }
        // Every line keeps its place, so line numbers stay true.
        code.push('\n');
    }
    code_targets(&module, &code, folders)
        .into_iter()
        .filter(|(_, to)| *to != module[0])
        .map(|(offset, to)| Import {
            from: module[0].clone(),
            to,
            at: format!(
                "{}:{}",
                rel.display(),
                code[..offset].matches('\n').count() + 1
            ),
        })
        .collect()
}

/// A line without its `//` comment (doc comments too: they are not code).
fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Folders the code names, with where: `crate::x`, `crate::{x::…, y}`
/// (over several lines, nested groups), and `super::…` chains resolved
/// from the file's module path.
fn code_targets(module: &[String], code: &str, folders: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut push = |at: usize, name: &str| {
        if folders.iter().any(|f| f == name) {
            out.push((at, name.to_owned()));
        }
    };
    let mut from = 0;
    while let Some(i) = find_word(&code[from..], "crate::") {
        let at = from + i;
        let after = &code[at + "crate::".len()..];
        match after.strip_prefix('{') {
            Some(group) => {
                for (offset, item) in top_level_items(group) {
                    push(at + "crate::{".len() + offset, first_segment(item));
                }
            }
            None => push(at, first_segment(after)),
        }
        from = at + "crate::".len();
    }
    let mut from = 0;
    while let Some(i) = find_word(&code[from..], "super::") {
        let at = from + i;
        let mut after = &code[at..];
        let mut up = 0;
        while let Some(a) = after.strip_prefix("super::") {
            up += 1;
            after = a;
        }
        // `super` once names the file's parent module; `up` times from a
        // module path as long as it is, the crate root.
        if up >= module.len() {
            match after.strip_prefix('{') {
                Some(group) => {
                    for (_, item) in top_level_items(group) {
                        push(at, first_segment(item));
                    }
                }
                None => push(at, first_segment(after)),
            }
        }
        from = at + "super::".len() * up;
    }
    out
}

/// The items of a `{…}` group (its text after the `{`), split at its own
/// commas, each with its offset, trimmed.
fn top_level_items(group: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push((start, &group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push((start, &group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|(o, item)| {
            let lead = item.len() - item.trim_start().len();
            (o + lead, item.trim())
        })
        .collect()
}

fn first_segment(path: &str) -> &str {
    let end = path
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(path.len());
    &path[..end]
}

/// `word` where it starts an identifier path (not `xsuper::`).
fn find_word(hay: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = hay[from..].find(word) {
        let at = from + i;
        let before = hay[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}
