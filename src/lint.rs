//! Lints that `klt-render check` adds to the renderer's own diagnostics: problems Keptn would
//! only show at run time, or that the API server would reject later.
//!
//! Most look at one object; the secret lints (KLT044, KLT045) need every definition and
//! KeptnTask, so the linter keeps a small summary of each and decides at the end.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::diag::{Diagnostic, Severity};
use crate::document::{self, Doc, SourceFile};
use crate::model::GROUP;
use crate::options::Options;
use crate::workload;
use crate::yaml::{Node, NodeKind, Pos};

/// Every finding of the renderer plus the lints, sorted and without duplicates.
pub fn check(files: &[SourceFile], opts: &Options) -> Vec<Diagnostic> {
    let mut linter = Linter::new(files, opts);
    // Findings only: the generated texts are never made.
    let mut diags =
        crate::render::render_inspecting(files, opts, |doc| linter.doc(doc), |r| r.diagnostics);
    let mut lints = linter.finish();
    crate::diag::redact_secrets(&mut lints, crate::render::source_texts(files));
    diags.extend(lints);
    crate::diag::finish(&mut diags);
    diags
}

/// The lints alone, on a load of their own.
pub fn lint(files: &[SourceFile], opts: &Options) -> Vec<Diagnostic> {
    let mut linter = Linter::new(files, opts);
    let mut ignored = Vec::new();
    document::load_each(files, &opts.limits, &mut ignored, |_, doc, _| {
        linter.doc(doc)
    });
    linter.finish()
}

/// Lints objects one at a time, as they are loaded: a render keeps only part of each tree.
struct Linter<'f> {
    opts: &'f Options,
    texts: BTreeMap<&'f str, &'f str>,
    /// The current file's lines, split once: a file with many definitions would otherwise be
    /// split again for every one of them. Objects arrive file by file, so one file is enough.
    lines: Option<(&'f str, Vec<&'f str>)>,
    diags: Vec<Diagnostic>,
    secrets: SecretUse<'f>,
}

impl<'f> Linter<'f> {
    fn new(files: &'f [SourceFile], opts: &'f Options) -> Self {
        Linter {
            opts,
            texts: files
                .iter()
                .map(|f| (f.path.as_str(), f.text.as_str()))
                .collect(),
            lines: None,
            diags: Vec::new(),
            secrets: SecretUse::default(),
        }
    }

    /// The object, for findings made once it is gone: its file (borrowed from the input when
    /// it is one of its files), at the object itself.
    fn origin(&self, doc: &Doc<'_>) -> Origin<'f> {
        let file = match self.texts.get_key_value(doc.file) {
            Some((&path, _)) => Cow::Borrowed(path),
            None => Cow::Owned(doc.file.to_string()),
        };
        Origin {
            file,
            pos: doc.root.pos,
            object: doc.display(),
            field: None,
        }
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        self.secrets.lint(&mut self.diags);
        self.diags
    }

    fn doc(&mut self, doc: &Doc<'_>) {
        if doc.group() == GROUP && doc.kind == "KeptnTaskDefinition" {
            let origin = self.origin(doc);
            let file_lines = file_lines(&self.texts, &mut self.lines, doc);
            definition_lints(doc, file_lines, self.opts, &mut self.diags);
            self.secrets.definition(doc, origin, file_lines, self.opts);
        }
        if doc.group().is_empty()
            && doc.kind == "ConfigMap"
            && doc.root.path(&["data", "code"]).is_some()
        {
            let origin = self.origin(doc);
            let file_lines = file_lines(&self.texts, &mut self.lines, doc);
            self.secrets.config_map(doc, origin, file_lines, self.opts);
        }
        if doc.group() == GROUP && doc.kind == "KeptnTask" {
            self.secrets.task(doc, self.opts);
        }
        if workload::is_workload_kind(doc) {
            for (prefix, meta) in [
                ("metadata", doc.root.get("metadata")),
                (
                    "spec.template.metadata",
                    doc.root.path(&["spec", "template", "metadata"]),
                ),
            ] {
                if let Some(meta) = meta {
                    string_values(doc, prefix, meta, &mut self.diags);
                }
            }
        }
    }
}

/// Env vars each runtime lets a task read (deno-runtime's `--allow-env`).
fn deno_env(opts: &Options) -> [&'static str; 3] {
    ["DATA", "SECURE_DATA", opts.profile.context_env]
}

fn definition_lints(
    doc: &Doc<'_>,
    text: Option<&[&str]>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) {
    let name = &doc.name;
    if name.len() > 63 - 11 - "post-".len() {
        diags.push(doc.diag(
            "KLT041",
            Severity::Warning,
            doc.root.path(&["metadata", "name"]).map_or(doc.root.pos, |n| n.pos),
            Some("metadata.name".into()),
            format!(
                "the name has {} characters; Job names keep only the first {} of it",
                name.len(),
                63 - 11 - "post-".len()
            ),
            Some("Job names must fit in 63 characters (the pod label job-name); shorten the name to keep it readable".into()),
        ));
    }
    for (key, python) in [("deno", false), ("function", false), ("python", true)] {
        let Some(runtime) = doc.root.path(&["spec", key]) else {
            continue;
        };
        if let Some(url) = runtime.path(&["httpRef", "url"])
            && url.as_str().is_some_and(|u| u.starts_with("http://"))
        {
            diags.push(doc.diag(
                "KLT042",
                Severity::Warning,
                url.pos,
                Some(format!("spec.{key}.httpRef.url")),
                "the task's code is fetched over plain http; anyone on the path can change what runs".into(),
                Some("use https://, or inline the code / keep it in a ConfigMap".into()),
            ));
        }
        if let Some(code) = runtime.path(&["inline", "code"])
            && let Some(src) = code.as_str()
        {
            env_lints(doc, key, python, src, code.pos, text, opts, diags);
        }
    }
}

/// Where the code's first character is in the file: block scalars start on the next line.
fn code_origin(pos: Pos, lines: Option<&[&str]>) -> (u32, u32) {
    let Some(lines) = lines else {
        return (pos.line, pos.col);
    };
    // Positions count lone CRs as line breaks and `lines` does not, so a position may lie
    // past the last line: nothing here may index by it.
    let here = lines
        .get((pos.line as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("");
    let after: String = here
        .chars()
        .skip((pos.col as usize).saturating_sub(1))
        .collect();
    if after.starts_with('|') || after.starts_with('>') {
        let next = lines
            .get(pos.line as usize..)
            .unwrap_or_default()
            .iter()
            .position(|l| !l.trim().is_empty())
            .map_or(pos.line + 1, |i| pos.line + 1 + i as u32);
        let indent = lines
            .get((next as usize).wrapping_sub(1))
            .map_or(0, |l| l.len() - l.trim_start().len());
        (next, indent as u32 + 1)
    } else if after.starts_with('"') || after.starts_with('\'') {
        (pos.line, pos.col + 1)
    } else {
        (pos.line, pos.col)
    }
}

#[allow(clippy::too_many_arguments)]
fn env_lints(
    doc: &Doc<'_>,
    key: &str,
    python: bool,
    code: &str,
    pos: Pos,
    text: Option<&[&str]>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) {
    let (line0, col0) = code_origin(pos, text);
    let allowed = deno_env(opts);
    let other_context = if opts.profile.context_env == "KEPTN_CONTEXT" {
        "CONTEXT"
    } else {
        "KEPTN_CONTEXT"
    };
    for (i, line) in code.lines().enumerate() {
        for (col, var) in env_reads(line, python) {
            let at = Pos {
                line: line0 + i as u32,
                col: col0 + col as u32,
            };
            let (severity, message, help) = if python {
                if var != other_context {
                    continue; // python tasks see the whole container environment
                }
                (
                    Severity::Warning,
                    format!(
                        "the task reads {var}, but the {} profile provides the context as {}",
                        opts.profile.name, opts.profile.context_env
                    ),
                    format!(
                        "read {} (or render with the profile whose runtime sets {var})",
                        opts.profile.context_env
                    ),
                )
            } else if var == "*" {
                (
                    Severity::Error,
                    "Deno.env.toObject() needs access to every variable; the deno runtime allows only some".to_string(),
                    format!("read the variables one by one: {}", allowed.join(", ")),
                )
            } else if !allowed.contains(&var.as_str()) {
                let help = if var == other_context {
                    format!(
                        "the {} profile's deno runtime passes the context as {}; read that, or render with --profile {}",
                        opts.profile.name,
                        opts.profile.context_env,
                        if other_context == "CONTEXT" {
                            "klt-0.9"
                        } else {
                            "keptn-2"
                        }
                    )
                } else {
                    format!("the deno runtime only allows {}", allowed.join(", "))
                };
                (
                    Severity::Error,
                    format!(
                        "Deno.env.get({var:?}) is refused by the deno runtime (--allow-env={})",
                        allowed.join(",")
                    ),
                    help,
                )
            } else {
                continue;
            };
            diags.push(doc.diag(
                "KLT040",
                severity,
                at,
                Some(format!("spec.{key}.inline.code")),
                message,
                Some(Cow::from(help)),
            ));
        }
    }
}

/// Env var names a line of code reads, with their 0-based column: `Deno.env.get("X")`
/// (`*` for `Deno.env.toObject()`), or python's `os.environ["X"]`, `os.environ.get("X")`,
/// `os.getenv("X")`.
fn env_reads(line: &str, python: bool) -> Vec<(usize, String)> {
    // Every pattern below holds this: most lines of code hold none, and are passed at once.
    if !line.contains(if python { "env" } else { "Deno.env." }) {
        return Vec::new();
    }
    let patterns: &[&str] = if python {
        &[
            "os.environ[",
            "os.environ.get(",
            "os.getenv(",
            "environ.get(",
            "getenv(",
        ]
    } else {
        &["Deno.env.get("]
    };
    let mut out = Vec::new();
    if !python && let Some(i) = line.find("Deno.env.toObject(") {
        out.push((i, "*".to_string()));
    }
    let mut seen = Vec::new();
    for p in patterns {
        let mut start = 0;
        while let Some(i) = line[start..].find(p) {
            let at = start + i;
            start = at + p.len();
            if seen.contains(&at) || seen.iter().any(|s: &usize| at > *s && at < *s + 12) {
                continue;
            }
            let rest = line[start..].trim_start();
            let Some(q) = rest
                .chars()
                .next()
                .filter(|c| matches!(c, '"' | '\'' | '`'))
            else {
                continue;
            };
            if let Some(end) = rest[1..].find(q) {
                seen.push(at);
                out.push((at, rest[1..1 + end].to_string()));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.1 == b.1 && a.0.abs_diff(b.0) < 12);
    out
}

/// Labels and annotations must be strings; an unquoted `1.10` is the number 1.1.
fn string_values(doc: &Doc<'_>, prefix: &str, meta: &Node, diags: &mut Vec<Diagnostic>) {
    for field in ["labels", "annotations"] {
        for e in meta.get(field).and_then(Node::as_map).unwrap_or_default() {
            let kind = match e.value.kind {
                // The renderer's KLT008 already reports lists and maps, wherever they are.
                NodeKind::Str(_) | NodeKind::Seq(_) | NodeKind::Map(_) => continue,
                NodeKind::Null => "null",
                NodeKind::Bool(_) => "boolean",
                NodeKind::Int(_) | NodeKind::Float(_) => "number",
            };
            let shown = document::scalar_string(&e.value).unwrap_or_default();
            diags.push(doc.diag(
                "KLT043",
                Severity::Error,
                e.value.pos,
                Some(format!("{prefix}.{field}.{}", e.key)),
                format!("the value of {} is a {kind} ({shown}), not a string; the API server rejects it", e.key),
                Some("quote the value, e.g. \"1.10\" (unquoted, YAML reads 1.10 as 1.1 and on as true)".into()),
            ));
        }
    }
}

/// The lines of `doc`'s file, split once per file: objects arrive file by file.
fn file_lines<'l, 'f>(
    texts: &BTreeMap<&'f str, &'f str>,
    lines: &'l mut Option<(&'f str, Vec<&'f str>)>,
    doc: &Doc<'_>,
) -> Option<&'l [&'f str]> {
    let (&path, &text) = texts.get_key_value(doc.file)?;
    if lines.as_ref().is_none_or(|(p, _)| *p != path) {
        *lines = Some((path, text.lines().collect()));
    }
    lines.as_ref().map(|(_, l)| l.as_slice())
}

/// What the secret lints need to know of the input: each definition's secret and code, and
/// the definitions KeptnTasks pass a secret to. Keys are (namespace, definition name), in
/// hash maps: B-tree inserts searched through the names were a tenth of `check` at 10,000
/// apps, and the findings are put in order at the end anyway.
#[derive(Default)]
struct SecretUse<'f> {
    definitions: HashMap<(String, String), SecretSummary<'f>>,
    task_secrets: HashSet<(String, String)>,
    /// ConfigMaps with a `code` key, which a definition may run by configMapRef.
    config_maps: HashMap<(String, String), ConfigMapCode<'f>>,
}

/// Where a finding made after its object is gone points, without the copies a whole
/// diagnostic kept for every definition (the largest state `check` held).
struct Origin<'f> {
    file: Cow<'f, str>,
    pos: Pos,
    object: String,
    field: Option<&'static str>,
}

impl Origin<'_> {
    /// A KLT044 warning here, its message still to be written.
    fn diag(&self) -> Diagnostic {
        Diagnostic {
            code: "KLT044",
            severity: Severity::Warning,
            message: String::new(),
            file: self.file.to_string(),
            pos: self.pos,
            object: Some(self.object.clone()),
            field: self.field.map(str::to_string),
            help: None,
        }
    }
}

/// What the code of a ConfigMap does with SECURE_DATA, read as deno and as python code (the
/// definition that mounts it says which).
struct ConfigMapCode<'f> {
    template: Origin<'f>,
    deno: CodeFacts,
    python: CodeFacts,
}

struct SecretSummary<'f> {
    /// For diagnostics made after the object is gone.
    template: Origin<'f>,
    runtime: &'static str,
    secret: Option<(Pos, String)>,
    function_ref: Option<String>,
    /// `configMapRef.name`, when the code is in a ConfigMap.
    config_map: Option<String>,
    python: bool,
    code: Option<CodeFacts>,
}

/// What inline code does with SECURE_DATA.
struct CodeFacts {
    /// The first literal read of SECURE_DATA, in file coordinates.
    read: Option<Pos>,
    /// The code names SECURE_DATA somewhere, or reads variables by computed names.
    may_read: bool,
}

impl<'f> SecretUse<'f> {
    fn definition(
        &mut self,
        doc: &Doc<'_>,
        origin: Origin<'f>,
        text: Option<&[&str]>,
        opts: &Options,
    ) {
        for (key, python) in [("deno", false), ("function", false), ("python", true)] {
            let Some(runtime) = doc.root.path(&["spec", key]) else {
                continue;
            };
            let secret = runtime.path(&["secureParameters", "secret"]).and_then(|n| {
                n.as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| (n.pos, s.to_string()))
            });
            let function_ref = runtime
                .path(&["functionRef", "name"])
                .and_then(Node::as_str)
                .map(str::to_string);
            let config_map = runtime
                .path(&["configMapRef", "name"])
                .and_then(Node::as_str)
                .map(str::to_string);
            let code = runtime
                .path(&["inline", "code"])
                .and_then(|c| c.as_str().map(|src| code_facts(src, python, c.pos, text)));
            let template = origin;
            let ns = doc.effective_namespace(opts.namespace.as_deref());
            self.definitions.insert(
                (ns, doc.name.to_string()),
                SecretSummary {
                    template,
                    runtime: key,
                    secret,
                    function_ref,
                    config_map,
                    python,
                    code,
                },
            );
            return;
        }
    }

    fn config_map(
        &mut self,
        doc: &Doc<'_>,
        origin: Origin<'f>,
        text: Option<&[&str]>,
        opts: &Options,
    ) {
        let Some(code) = doc.root.path(&["data", "code"]) else {
            return;
        };
        let Some(src) = code.as_str() else { return };
        let template = Origin {
            pos: code.pos,
            field: Some("data.code"),
            ..origin
        };
        let ns = doc.effective_namespace(opts.namespace.as_deref());
        self.config_maps.insert(
            (ns, doc.name.to_string()),
            ConfigMapCode {
                template,
                deno: code_facts(src, false, code.pos, text),
                python: code_facts(src, true, code.pos, text),
            },
        );
    }

    /// The code a definition runs itself: inline, or in the ConfigMap it names. With the
    /// ConfigMap's finding template when the code is there.
    fn own_code<'s>(
        &'s self,
        ns: &str,
        d: &'s SecretSummary<'f>,
    ) -> Option<(&'s CodeFacts, Option<&'s Origin<'f>>)> {
        if let Some(c) = &d.code {
            return Some((c, None));
        }
        let cm = self
            .config_maps
            .get(&(ns.to_string(), d.config_map.clone()?))?;
        let facts = if d.python { &cm.python } else { &cm.deno };
        Some((facts, Some(&cm.template)))
    }

    fn task(&mut self, doc: &Doc<'_>, opts: &Options) {
        let spec = doc.root.get("spec");
        let def = spec
            .and_then(|s| s.get("taskDefinition"))
            .and_then(Node::as_str);
        let secret = spec
            .and_then(|s| s.path(&["secureParameters", "secret"]))
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty());
        if let (Some(def), Some(_)) = (def, secret) {
            let ns = doc.effective_namespace(opts.namespace.as_deref());
            self.task_secrets.insert((ns, def.to_string()));
        }
    }

    /// KLT044: code reads SECURE_DATA and nothing passes a secret to it; KLT045: a secret is
    /// passed to code that never reads it.
    fn lint(&self, diags: &mut Vec<Diagnostic>) {
        // Definitions that pass a secret on by functionRef, listed once: a search of every
        // definition for each finding was quadratic (12,000 findings: 12 s).
        let passed_on: HashSet<(&str, &str)> = (self.definitions.iter())
            .filter(|(_, d)| d.secret.is_some())
            .filter_map(|((ns, _), d)| Some((ns.as_str(), d.function_ref.as_deref()?)))
            .collect();
        let mut definitions: Vec<_> = self.definitions.iter().collect();
        definitions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((ns, name), d) in definitions {
            let own = self.own_code(ns, d);
            if let Some((read, in_map)) = own.and_then(|(c, t)| c.read.map(|r| (r, t)))
                && d.secret.is_none()
                && !self.secret_reaches(ns, name, &passed_on)
            {
                let mut diag = in_map.unwrap_or(&d.template).diag();
                diag.pos = read;
                if in_map.is_none() {
                    diag.field = Some(format!("spec.{}.inline.code", d.runtime));
                }
                let whose = match (in_map, &d.config_map) {
                    (Some(_), Some(cm)) => format!("the code of {name:?} (ConfigMap {cm:?})"),
                    _ => "the task".to_string(),
                };
                diag.message = format!(
                    "{whose} reads SECURE_DATA, but no secret is passed to {name:?}: without spec.{}.secureParameters the variable is not set",
                    d.runtime
                );
                diag.help = Some(Cow::Owned(format!(
                    "add `secureParameters: {{secret: NAME}}` under spec.{} (a Secret with the key SECURE_DATA), or pass one from a KeptnTask",
                    d.runtime
                )));
                diags.push(diag);
            }
            let Some((pos, secret)) = &d.secret else {
                continue;
            };
            // The code that runs: the functionRef target's when there is one.
            let (code, whose) = match &d.function_ref {
                Some(target) => (
                    self.definitions
                        .get(&(ns.clone(), target.clone()))
                        .and_then(|t| self.own_code(ns, t))
                        .map(|(c, _)| c),
                    format!("the code of {target:?}, which functionRef runs,"),
                ),
                None => (own.map(|(c, _)| c), "the task's code".to_string()),
            };
            if code.is_some_and(|c| !c.may_read) {
                let mut diag = d.template.diag();
                diag.code = "KLT045";
                diag.pos = *pos;
                diag.field = Some(format!("spec.{}.secureParameters.secret", d.runtime));
                diag.message = format!(
                    "Secret {secret:?} is passed as SECURE_DATA, but {whose} never reads SECURE_DATA"
                );
                diag.help = Some("read it (Deno.env.get(\"SECURE_DATA\"), python os.environ[\"SECURE_DATA\"]), or leave secureParameters out if the task needs no secret".into());
                diags.push(diag);
            }
        }
    }

    /// Whether a KeptnTask, or a definition that runs this one's code by functionRef (one of
    /// `passed_on`), passes a secret to definition `name`.
    fn secret_reaches(&self, ns: &str, name: &str, passed_on: &HashSet<(&str, &str)>) -> bool {
        self.task_secrets
            .contains(&(ns.to_string(), name.to_string()))
            || passed_on.contains(&(ns, name))
    }
}

fn code_facts(code: &str, python: bool, pos: Pos, text: Option<&[&str]>) -> CodeFacts {
    let (line0, col0) = code_origin(pos, text);
    let mut read = None;
    let mut literal_reads = 0;
    for (i, line) in code.lines().enumerate() {
        for (col, var) in env_reads(line, python) {
            // `*` is Deno.env.toObject(): every variable, counted as an access below.
            literal_reads += usize::from(var != "*");
            if var == "SECURE_DATA" && read.is_none() {
                read = Some(Pos {
                    line: line0 + i as u32,
                    col: col0 + col as u32,
                });
            }
        }
    }
    // Reads by computed names (a loop over names, the whole environment) may read it too.
    let accesses = if python {
        code.matches("environ").count() + code.matches("getenv(").count()
    } else {
        code.matches("Deno.env.get(").count() + code.matches("Deno.env.toObject(").count()
    };
    CodeFacts {
        read,
        may_read: code.contains("SECURE_DATA") || accesses > literal_reads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_env_reads() {
        assert_eq!(
            env_reads(
                r#"let c = Deno.env.get("CONTEXT"); let d = Deno.env.get('DATA');"#,
                false
            ),
            vec![(8, "CONTEXT".to_string()), (41, "DATA".to_string())]
        );
        assert_eq!(
            env_reads("const all = Deno.env.toObject();", false),
            vec![(12, "*".into())]
        );
        assert_eq!(
            env_reads(r#"x = os.environ["CONTEXT"]; y = os.getenv('DATA')"#, true),
            vec![(4, "CONTEXT".to_string()), (31, "DATA".to_string())]
        );
        assert_eq!(env_reads("os.environ.get(name)", true), vec![]);
    }

    #[test]
    fn code_that_may_read_the_secret() {
        let facts = |code: &str, python| code_facts(code, python, Pos { line: 1, col: 1 }, None);
        let read = facts("let s = Deno.env.get(\"SECURE_DATA\");", false);
        assert_eq!(read.read, Some(Pos { line: 1, col: 9 }));
        assert!(read.may_read);
        assert!(!facts("Deno.env.get(\"DATA\")", false).may_read);
        // Computed names and the whole environment may reach it; a mention in a string too.
        assert!(facts("for (const n of names) Deno.env.get(n)", false).may_read);
        assert!(facts("const all = Deno.env.toObject()", false).may_read);
        assert!(facts("env = dict(os.environ)", true).may_read);
        assert!(facts("key = 'SECURE_DATA'", true).may_read);
        assert!(!facts("print(os.environ['DATA'])", true).may_read);
    }
}
