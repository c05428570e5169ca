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

pub fn gather(paths: &[PathBuf], boundary: Option<&Path>) -> Result<Vec<SourceFile>> {
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
        let limit = match boundary {
            Some(b) => {
                fs::canonicalize(b).with_context(|| format!("{}: cannot open", b.display()))?
            }
            None => root.clone(),
        };
        if !root.starts_with(&limit) {
            bail!(
                "{}: outside {}; refusing to read it",
                p.display(),
                limit.display()
            );
        }
        if meta.is_dir() {
            let mut visited = std::collections::HashSet::new();
            walk(&limit, &root, p, &mut files, &mut visited)?;
        } else {
            files.push(read(&root, &p.display().to_string())?);
        }
    }
    Ok(files)
}

fn walk(
    root: &Path,
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
            let resolved = fs::canonicalize(&path)
                .with_context(|| format!("{}: broken symlink", shown_path.display()))?;
            if !resolved.starts_with(root) {
                bail!(
                    "{}: symlink points outside {} ({}); refusing to read it",
                    shown_path.display(),
                    root.display(),
                    resolved.display()
                );
            }
            resolved
        } else {
            path
        };
        if target.is_dir() {
            walk(root, &target, &shown_path, files, visited)?;
        } else if is_manifest(&name) {
            files.push(read(&target, &shown_path.display().to_string())?);
        }
    }
    Ok(())
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
        path: shown.trim_start_matches("./").to_string(),
        text,
    })
}
