//! `docs/ARCHITECTURE.md` agrees with the source tree: every module of the product crates
//! (each `.rs` file under `common/src`, `firmware/src` and `host/src`, but `lib.rs` and the
//! unit-test files `tests.rs`) is named in the codemap, and every file and module path the
//! codemap names exists. A module added, moved or removed without the codemap fails here.
//!
//! What counts as naming a module, in a code span (`` `…` ``) of the section about its
//! crate (`## common …`, `## firmware…`, `## host …`) or of the introduction: its file name
//! (`writer.rs`), its path under `src` (`commands/snapshot.rs`) or the repository
//! (`firmware/src/mmap.rs`), its module path with or without the crate
//! (`firmware::wal::writer`, `wal::writer`, `engine::image::Slots`), its bare name
//! (`varint`), or for a directory module its directory (`ship/`, `server/*`). Headings
//! count as code spans. Fenced diagrams are prose and are not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ARCHITECTURE_MD: &str = include_str!("../../docs/ARCHITECTURE.md");
/// The crates whose modules the codemap must name, by directory.
const PRODUCT_CRATES: &[&str] = &["common", "firmware", "host"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A module file of a product crate.
#[derive(Debug)]
struct Module {
    krate: &'static str,
    /// Path under `src`, with `/` separators: `wal/writer.rs`.
    rel: String,
    /// Module path segments: `["wal", "writer"]` (`wal/mod.rs` is `["wal"]`).
    segments: Vec<String>,
}

impl Module {
    fn is_dir_module(&self) -> bool {
        self.rel.ends_with("/mod.rs")
    }

    /// Whether `token` names this module (see the file's doc).
    fn named_by(&self, token: &str) -> bool {
        let token = token.trim_end_matches(['*', ',', '.']);
        let path = self.segments.join("::");
        let file_name = self.rel.rsplit('/').next().unwrap();
        let full = format!("{}/src/{}", self.krate, self.rel);
        if token == self.rel || token == full {
            return true;
        }
        if !self.is_dir_module() && token == file_name {
            return true;
        }
        if self.is_dir_module() {
            let dir = self.rel.trim_end_matches("mod.rs");
            if token == dir || token == dir.trim_end_matches('/') && self.segments.len() > 1 {
                return true;
            }
        }
        let bare = self.segments.last().unwrap();
        if token == bare {
            return true;
        }
        for prefix in ["", self.krate, &format!("gridlog_{}", self.krate)] {
            let p = if prefix.is_empty() {
                path.clone()
            } else {
                format!("{prefix}::{path}")
            };
            if token == p || token.starts_with(&format!("{p}::")) {
                return true;
            }
        }
        false
    }
}

/// Every file under `root`, but hidden ones and `target/`.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `path` under `root`, with `/` separators.
fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn modules() -> Vec<Module> {
    let mut out = Vec::new();
    for krate in PRODUCT_CRATES {
        let src = repo().join(krate).join("src");
        for path in files_under(&src) {
            let rel = relative(&path, &src);
            let name = path.file_name().unwrap().to_string_lossy();
            if !rel.ends_with(".rs") || name == "lib.rs" || name == "tests.rs" {
                continue;
            }
            let mut segments: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(String::from)
                .collect();
            if segments.last().is_some_and(|s| s == "mod") {
                segments.pop();
            }
            out.push(Module {
                krate,
                rel,
                segments,
            });
        }
    }
    out.sort_by(|a, b| (a.krate, &a.rel).cmp(&(b.krate, &b.rel)));
    out
}

/// The code spans of the document by the crate of their section (`None`: the introduction
/// or a section about no product crate), fenced blocks left out, headings' words with
/// `::` counted as spans.
fn spans() -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    let mut krate: Option<&'static str> = None;
    let mut fenced = false;
    let mut intro = true;
    for line in ARCHITECTURE_MD.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            intro = false;
            let first = heading.split([' ', ':']).next().unwrap_or("");
            krate = PRODUCT_CRATES.iter().copied().find(|c| *c == first);
            for word in heading.split([' ', ',']) {
                if word.contains("::") {
                    out.push((krate, word.to_string()));
                }
            }
        }
        let section = if intro { None } else { krate };
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 1 {
                out.push((section, piece.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_module_is_named_in_the_codemap() {
    let spans = spans();
    let unnamed: Vec<String> = modules()
        .iter()
        .filter(|m| {
            !spans
                .iter()
                .filter(|(k, _)| k.is_none() || *k == Some(m.krate))
                .any(|(_, t)| m.named_by(t))
        })
        .map(|m| format!("{}/src/{}", m.krate, m.rel))
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/ARCHITECTURE.md does not name these modules: {unnamed:#?}"
    );
}

#[test]
fn every_file_and_module_the_codemap_names_exists() {
    let modules = modules();
    let all_files: BTreeSet<String> = files_under(&repo())
        .iter()
        .map(|f| relative(f, &repo()))
        .collect();
    let mut missing = Vec::new();
    for (krate, token) in spans() {
        if token.ends_with(".rs") && !token.contains(' ') {
            // A module of the section's crate, or any file of the repository (a test, say)
            // by its path or file name.
            let exists = krate
                .is_some_and(|k| modules.iter().any(|m| m.krate == k && m.named_by(&token)))
                || all_files
                    .iter()
                    .any(|f| *f == token || f.ends_with(&format!("/{token}")));
            if !exists {
                missing.push(token);
            }
            continue;
        }
        let mut segments = token.split("::");
        let (Some(first), Some(second)) = (segments.next(), segments.next()) else {
            continue;
        };
        let first = first.trim_start_matches("gridlog_");
        let second = second.trim_end_matches(['(', ')', ',', '.']);
        if !PRODUCT_CRATES.contains(&first) || second.starts_with(char::is_uppercase) {
            continue;
        }
        // `crate::module…`: the module exists (what follows may be an item in it).
        let second = second.split(['{', ' ']).next().unwrap_or("");
        if !second.is_empty()
            && !modules
                .iter()
                .any(|m| m.krate == first && m.segments.first().is_some_and(|s| s == second))
        {
            missing.push(token);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names files or modules that do not exist: {missing:#?}"
    );
}
