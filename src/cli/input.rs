//! Gathers input files for the CLI: files, directories (recursively `*.yaml`, `*.yml`,
//! `*.json`) and `-` for stdin. Nothing outside the given trees (or the given boundary, such as
//! an Argo CD repository checkout) is read: a symlink that leaves it is an error, not a silent
//! skip.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use klt_render::SourceFile;

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
/// kustomize's own files are build instructions, not objects.
const SKIPPED_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// `boundary`: the directory reads are confined to, and how messages call it; default: each
/// given path is its own boundary.
pub fn gather(paths: &[PathBuf], boundary: Option<(&Path, &str)>) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            files.push(SourceFile {
                path: "<stdin>".into(),
                text,
            });
            continue;
        }
        let root = fs::canonicalize(p).with_context(|| format!("{}: cannot open", p.display()))?;
        let meta = fs::metadata(&root).with_context(|| format!("{}: cannot open", p.display()))?;
        let (limit, limit_name) = match boundary {
            Some((b, name)) => (
                fs::canonicalize(b).with_context(|| format!("{}: cannot open", b.display()))?,
                name.to_string(),
            ),
            None => (root.clone(), display(p)),
        };
        if !root.starts_with(&limit) {
            bail!("{}: outside {limit_name}; refusing to read it", display(p));
        }
        if meta.is_dir() {
            let mut visited = std::collections::HashSet::new();
            let bound = Bound {
                dir: &limit,
                name: &limit_name,
            };
            walk(&bound, &root, p, &mut files, &mut visited)?;
        } else {
            files.push(read(&root, &display(p))?);
        }
    }
    Ok(files)
}

struct Bound<'a> {
    dir: &'a Path,
    name: &'a str,
}

fn walk(
    bound: &Bound<'_>,
    dir: &Path,
    shown: &Path,
    files: &mut Vec<SourceFile>,
    visited: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    // A symlink back to an ancestor would otherwise recurse for ever.
    if !visited.insert(fs::canonicalize(dir)?) {
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", shown.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: cannot list", shown.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let shown_path = shown.join(&*name);
        let file_type = entry.file_type()?;
        let target = if file_type.is_symlink() {
            let link = fs::read_link(&path)?;
            let outside = |p: &Path| !p.starts_with(bound.dir);
            // Judge the link by where it points before following it: a link to a file that
            // does not exist here (e.g. /etc/passwd in a minimal image) still leaves the tree.
            if outside(&lexical(&dir.join(&link))) {
                bail!(
                    "{}: symlink points outside {} (to {}); refusing to read it",
                    display(&shown_path),
                    bound.name,
                    link.display()
                );
            }
            let resolved = fs::canonicalize(&path)
                .with_context(|| format!("{}: broken symlink", display(&shown_path)))?;
            if outside(&resolved) {
                bail!(
                    "{}: symlink points outside {} (to {}); refusing to read it",
                    display(&shown_path),
                    bound.name,
                    link.display()
                );
            }
            resolved
        } else {
            path
        };
        if target.is_dir() {
            walk(bound, &target, &shown_path, files, visited)?;
        } else if is_manifest(&name) {
            files.push(read(&target, &display(&shown_path))?);
        }
    }
    Ok(())
}

/// `p` with `.` and `..` removed without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A path as messages show it: relative, without a leading `./`.
fn display(p: &Path) -> String {
    let s = p.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

fn is_manifest(name: &str) -> bool {
    !SKIPPED_NAMES.contains(&name)
        && Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn read(path: &Path, shown: &str) -> Result<SourceFile> {
    let bytes = fs::read(path).with_context(|| format!("{shown}: cannot read"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{shown}: not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(SourceFile {
        path: shown.to_string(),
        text,
    })
}
