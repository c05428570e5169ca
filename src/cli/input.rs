//! Gathers input files for the CLI: files, directories (recursively `*.yaml`, `*.yml`,
//! `*.json`) and `-` for stdin. Nothing outside the given trees (or the given boundary, such as
//! an Argo CD repository checkout) is read: a symlink that leaves it is an error, not a silent
//! skip.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use klt_render::SourceFile;
use klt_render::limits::{Limit, Limits};

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
/// kustomize's own files are build instructions, not objects.
const SKIPPED_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// An error that is already a located diagnostic line (`path:line:col: error[CODE]: ...`), so
/// adapters print it without a prefix of their own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Located(pub String);

/// `boundary`: the directory reads are confined to, and how messages call it; default: each
/// given path is its own boundary. Reading stops at the input-size limit, so `/dev/zero` or a
/// huge file costs no more than the limit.
pub fn gather(
    paths: &[PathBuf],
    boundary: Option<(&Path, &str)>,
    limits: &Limits,
) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    let mut reader = Reader {
        limits,
        remaining: limits.max_input_bytes,
    };
    for p in paths {
        if p.as_os_str() == "-" {
            let text = reader.read(std::io::stdin().lock(), "<stdin>")?;
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
            let mut walk = Walk {
                bound: &bound,
                files: &mut files,
                visited: &mut visited,
                reader: &mut reader,
            };
            walk.dir(&root, p, 0)?;
        } else {
            // Named explicitly, so a pipe (`<(kustomize build)`) is fine; its size is bounded.
            files.push(reader.open(&root, &display(p))?);
        }
    }
    Ok(files)
}

struct Bound<'a> {
    dir: &'a Path,
    name: &'a str,
}

struct Walk<'a, 'l> {
    bound: &'a Bound<'a>,
    files: &'a mut Vec<SourceFile>,
    visited: &'a mut std::collections::HashSet<PathBuf>,
    reader: &'a mut Reader<'l>,
}

impl Walk<'_, '_> {
    fn dir(&mut self, dir: &Path, shown: &Path, depth: u32) -> Result<()> {
        let limits = self.reader.limits;
        if depth > limits.max_dir_depth {
            return Err(Located(format!(
                "{}: error[KLT050]: input limit {}: more than {} directory levels; help: {}",
                display(shown),
                Limit::DirDepth,
                limits.max_dir_depth,
                Limit::DirDepth.help(limits)
            ))
            .into());
        }
        // A symlink back to an ancestor would otherwise recurse for ever.
        if !self.visited.insert(fs::canonicalize(dir)?) {
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
            let shown_path = shown.join(&*name);
            let target = self.resolve(&entry, dir, &shown_path)?;
            let meta = fs::metadata(&target)
                .with_context(|| format!("{}: cannot open", display(&shown_path)))?;
            if meta.is_dir() {
                self.dir(&target, &shown_path, depth + 1)?;
            } else if is_manifest(&name) {
                if !meta.is_file() {
                    // A FIFO would block the read for ever, a device never ends.
                    bail!(
                        "{}: not a regular file (a FIFO, socket or device); refusing to read it",
                        display(&shown_path)
                    );
                }
                let file = self.reader.open(&target, &display(&shown_path))?;
                self.files.push(file);
            }
        }
        Ok(())
    }

    /// The entry's path, with a symlink followed only when it stays inside the boundary.
    fn resolve(&self, entry: &fs::DirEntry, dir: &Path, shown_path: &Path) -> Result<PathBuf> {
        let path = entry.path();
        if !entry.file_type()?.is_symlink() {
            return Ok(path);
        }
        let bound = self.bound;
        let link = fs::read_link(&path)?;
        let outside = |p: &Path| !p.starts_with(bound.dir);
        let refuse = || {
            anyhow::anyhow!(
                "{}: symlink points outside {} (to {}); refusing to read it",
                display(shown_path),
                bound.name,
                link.display()
            )
        };
        // Judge the link by where it points before following it: a link to a file that
        // does not exist here (e.g. /etc/passwd in a minimal image) still leaves the tree.
        if outside(&lexical(&dir.join(&link))) {
            return Err(refuse());
        }
        let resolved = fs::canonicalize(&path)
            .with_context(|| format!("{}: broken symlink", display(shown_path)))?;
        if outside(&resolved) {
            return Err(refuse());
        }
        Ok(resolved)
    }
}

/// Reads input text, charging every byte to the input-size limit.
struct Reader<'l> {
    limits: &'l Limits,
    remaining: u64,
}

impl Reader<'_> {
    fn open(&mut self, path: &Path, shown: &str) -> Result<SourceFile> {
        let file = fs::File::open(path).with_context(|| format!("{shown}: cannot read"))?;
        // Every input is held for the whole render: read it into a buffer of its exact size
        // rather than one grown by doubling (`take` hides the size hint from read_to_end).
        let size = file.metadata().map_or(0, |m| m.len());
        let text = self.read_sized(file, shown, size)?;
        Ok(SourceFile {
            path: shown.to_string(),
            text,
        })
    }

    fn read(&mut self, source: impl Read, shown: &str) -> Result<String> {
        self.read_sized(source, shown, 0)
    }

    fn read_sized(&mut self, source: impl Read, shown: &str, size_hint: u64) -> Result<String> {
        let capacity = size_hint.min(self.remaining).saturating_add(1);
        let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        source
            .take(self.remaining.saturating_add(1))
            .read_to_end(&mut bytes)
            .with_context(|| format!("{shown}: cannot read"))?;
        let n = bytes.len() as u64;
        if n > self.remaining {
            let limits = self.limits;
            return Err(Located(format!(
                "{shown}:1:1: error[KLT050]: input limit {}: the input is larger than {} bytes; help: {}",
                Limit::InputBytes,
                limits.max_input_bytes,
                Limit::InputBytes.help(limits)
            ))
            .into());
        }
        self.remaining -= n;
        String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{shown}: not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            )
        })
    }
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
