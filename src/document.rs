//! Input documents: files split into objects, `kind: List` unpacked, objects identified.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::limits::{Limit, Limits};
use crate::yaml::{self, Node, NodeKind, Pos};

/// One input file, already read by an adapter. `path` is how diagnostics name it.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// One Kubernetes object from the input.
#[derive(Debug)]
pub struct Doc<'a> {
    pub file: &'a str,
    pub root: Node<'a>,
    /// The document text for verbatim output; `None` for items of a `kind: List`.
    pub raw: Option<&'a str>,
    /// The 1-based line of the file where `raw` starts (0 without `raw`), so that a model can
    /// find a node's text in `raw` by its position.
    pub raw_line: u32,
    /// Borrowed from the input where the tree is (plain or simply quoted scalars): copies of
    /// them for every object added up to megabytes.
    pub api_version: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// `metadata.namespace` as written.
    pub namespace: Option<Cow<'a, str>>,
    /// Whether `metadata.name` is set (`name` is the generateName otherwise). Read from the
    /// tree at load, since the render cuts trees: duplicates are checked only among these.
    pub named: bool,
}

/// The object a model names until the render attaches the loaded one: models of Keptn kinds
/// are read while the object loads, with its whole tree, and the tree is dropped at once
/// (see `model::read_task_definition_detached`).
pub static DETACHED: Doc<'static> = Doc {
    file: "",
    root: Node {
        kind: NodeKind::Null,
        pos: Pos { line: 0, col: 0 },
    },
    raw: None,
    raw_line: 0,
    api_version: Cow::Borrowed(""),
    kind: Cow::Borrowed(""),
    name: Cow::Borrowed(""),
    namespace: None,
    named: false,
};

impl Doc<'_> {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }

    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind, ns, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The namespace the object lands in: its own, else the destination (`""` = unknown).
    pub fn effective_namespace(&self, destination: Option<&str>) -> String {
        self.namespace
            .as_deref()
            .or(destination)
            .unwrap_or_default()
            .to_string()
    }

    pub fn metadata_map(&self, field: &str) -> BTreeMap<String, String> {
        string_map(self.root.path(&["metadata", field]))
    }

    pub fn diag(
        &self,
        code: &'static str,
        severity: Severity,
        pos: Pos,
        field: Option<String>,
        message: String,
        help: Option<Cow<'static, str>>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            message,
            file: self.file.to_string(),
            pos,
            object: Some(self.display()),
            field,
            help,
        }
    }
}

/// A string-to-string map such as labels; non-string scalars are written as YAML would.
pub fn string_map(node: Option<&Node>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(entries) = node.and_then(Node::as_map) {
        for e in entries {
            if let Some(v) = scalar_string(&e.value) {
                out.insert(e.key.to_string(), v);
            }
        }
    }
    out
}

/// String pairs sorted by key, each key once: a map as [`string_map`] reads it, for the
/// small maps models keep for the whole render (labels, context metadata). A `BTreeMap` of
/// strings takes a 544-byte node for a single entry.
pub type Pairs = Vec<(String, String)>;

/// [`string_map`] as [`Pairs`]: a later duplicate key wins, as in the map.
pub fn string_pairs(node: Option<&Node>) -> Pairs {
    let entries = node.and_then(Node::as_map).unwrap_or_default();
    let mut out: Pairs = entries
        .iter()
        .rev()
        .filter_map(|e| Some((e.key.to_string(), scalar_string(&e.value)?)))
        .collect();
    sort_pairs(&mut out);
    out
}

/// Sorts pairs by key, keeping the first of equal keys, and frees the spare room.
pub fn sort_pairs(pairs: &mut Pairs) {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.dedup_by(|later, first| later.0 == first.0);
    pairs.shrink_to_fit();
}

/// [`string_map`] borrowing from the tree what it can: for maps read again for every Job.
pub fn borrowed_map<'a>(node: Option<&Node<'a>>) -> BTreeMap<Cow<'a, str>, Cow<'a, str>> {
    let mut out = BTreeMap::new();
    if let Some(entries) = node.and_then(Node::as_map) {
        for e in entries {
            let value = match &e.value.kind {
                NodeKind::Str(s) => Some(s.clone()),
                _ => scalar_string(&e.value).map(Cow::Owned),
            };
            if let Some(v) = value {
                out.insert(e.key.clone(), v);
            }
        }
    }
    out
}

/// The string a scalar stands for in a string-typed field.
pub fn scalar_string(node: &Node) -> Option<String> {
    match &node.kind {
        NodeKind::Str(s) => Some(s.to_string()),
        NodeKind::Bool(b) => Some(b.to_string()),
        NodeKind::Int(i) => Some(i.to_string()),
        NodeKind::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Splits and parses every file with the default limits.
pub fn load<'a>(files: &'a [SourceFile], diags: &mut Vec<Diagnostic>) -> Vec<Doc<'a>> {
    load_with(files, &Limits::default(), diags)
}

/// Splits and parses every file. Files are taken in the given order; nothing downstream
/// depends on that order except diagnostics, which are sorted anyway. Input over a limit is
/// one located error and stops the load: what follows would only cost more.
pub fn load_with<'a>(
    files: &'a [SourceFile],
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Doc<'a>> {
    load_each(files, limits, diags, |_, _, _| {})
}

/// [`load_with`], calling `each` with every object (and its index) as soon as it is read:
/// what `each` takes from a tree or drops of it never adds to the peak of a load.
pub fn load_each<'a>(
    files: &'a [SourceFile],
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
    mut each: impl FnMut(usize, &mut Doc<'a>, &mut Vec<Diagnostic>),
) -> Vec<Doc<'a>> {
    let mut docs = Vec::new();
    let mut budget = yaml::Budget::new(*limits);
    let mut input_bytes = 0u64;
    let mut documents = 0u64;
    for file in files {
        input_bytes = input_bytes.saturating_add(file.text.len() as u64);
        if input_bytes > limits.max_input_bytes {
            let message = format!(
                "the input is larger than {} bytes (at this file it reaches {input_bytes})",
                limits.max_input_bytes
            );
            diags.push(limit_diag(
                file,
                Pos { line: 1, col: 1 },
                Limit::InputBytes,
                message,
                limits,
            ));
            return docs;
        }
        for chunk in file_chunks(file) {
            documents += 1;
            if documents > limits.max_documents {
                let pos = Pos {
                    line: chunk.first_line,
                    col: 1,
                };
                let message = format!(
                    "more than {} YAML documents in the input",
                    limits.max_documents
                );
                diags.push(limit_diag(file, pos, Limit::Documents, message, limits));
                return docs;
            }
            match yaml::parse_document_with(&chunk, &mut budget) {
                Ok(None) => {}
                Ok(Some(root)) => {
                    let first = docs.len();
                    let raw = (chunk.body, body_line(&chunk));
                    add_object(&file.path, root, Some(raw), &mut docs, diags);
                    for (i, doc) in docs.iter_mut().enumerate().skip(first) {
                        each(i, doc, diags);
                    }
                }
                Err(e) => match e.limit {
                    Some(limit) => {
                        diags.push(limit_diag(file, e.pos, limit, e.message, limits));
                        return docs;
                    }
                    None => diags.push(syntax_diag(file, e)),
                },
            }
        }
    }
    // Every document is kept until the render ends: no growth slack.
    docs.shrink_to_fit();
    docs
}

/// The line where a chunk's body starts: after its bare `---` line, if it has one.
fn body_line(chunk: &yaml::Chunk<'_>) -> u32 {
    let skipped = (chunk.body.as_ptr() as usize).saturating_sub(chunk.text.as_ptr() as usize);
    let head = chunk.text.get(..skipped).unwrap_or_default();
    chunk.first_line + head.bytes().filter(|b| *b == b'\n').count() as u32
}

fn file_chunks(file: &SourceFile) -> Box<dyn Iterator<Item = yaml::Chunk<'_>> + '_> {
    if file.path.ends_with(".json") {
        Box::new(std::iter::once(yaml::Chunk {
            text: &file.text,
            body: &file.text,
            first_line: 1,
        }))
    } else {
        Box::new(yaml::chunks(&file.text))
    }
}

fn syntax_diag(file: &SourceFile, e: yaml::YamlError) -> Diagnostic {
    Diagnostic {
        code: "KLT001",
        severity: Severity::Error,
        message: format!("YAML: {}", e.message),
        file: file.path.clone(),
        pos: e.pos,
        object: None,
        field: None,
        help: Some("fix the YAML syntax; nothing is rendered until every file parses".into()),
    }
}

/// KLT050: the input exceeded one of the [`Limits`].
pub fn limit_diag(
    file: &SourceFile,
    pos: Pos,
    limit: Limit,
    message: String,
    limits: &Limits,
) -> Diagnostic {
    Diagnostic {
        code: "KLT050",
        severity: Severity::Error,
        message: format!("input limit {limit}: {message}"),
        file: file.path.clone(),
        pos,
        object: None,
        field: None,
        help: Some(Cow::from(limit.help(limits))),
    }
}

/// A string scalar as the tree holds it: borrowed from the input when it can be.
fn cow_str<'a>(node: &Node<'a>) -> Option<Cow<'a, str>> {
    match &node.kind {
        NodeKind::Str(s) => Some(s.clone()),
        _ => None,
    }
}

const KEPTN_GROUP_PREFIX: &str = "lifecycle.keptn.sh/";

fn add_object<'a>(
    file: &'a str,
    root: Node<'a>,
    raw: Option<(&'a str, u32)>,
    docs: &mut Vec<Doc<'a>>,
    diags: &mut Vec<Diagnostic>,
) {
    let missing = |what: &str, pos: Pos| {
        Diagnostic {
        code: "KLT002",
        severity: Severity::Error,
        message: format!("document has no {what}"),
        file: file.to_string(),
        pos,
        object: None,
        field: Some(what.to_string()),
        help: Some("every document must be a Kubernetes object with apiVersion, kind and metadata.name (Argo CD rejects anything else)".into()),
    }
    };
    if root.as_map().is_none() {
        diags.push(missing("apiVersion", root.pos));
        return;
    }
    let api_version = root.get("apiVersion").and_then(cow_str);
    let kind = root.get("kind").and_then(cow_str);
    let (api_version, kind) = match (api_version, kind) {
        (Some(api_version), Some(kind)) => (api_version, kind),
        (api_version, _) => {
            let what = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            diags.push(missing(what, root.pos));
            return;
        }
    };
    if kind == "List" || kind.ends_with("List") && api_version == "v1" {
        let items = root.get("items");
        match items.map(|n| &n.kind) {
            Some(NodeKind::Seq(items)) => {
                for item in items.clone() {
                    add_object(file, item, None, docs, diags);
                }
            }
            None | Some(NodeKind::Null) => {}
            Some(_) => diags.push(Diagnostic {
                code: "KLT029",
                severity: Severity::Error,
                message: "items of a List must be a list of objects".into(),
                file: file.to_string(),
                pos: items.map_or(root.pos, |n| n.pos),
                object: None,
                field: Some("items".into()),
                help: None,
            }),
        }
        return;
    }
    let meta = root.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(cow_str)
        .or_else(|| meta.and_then(|m| m.get("generateName")).and_then(cow_str));
    let Some(name) = name else {
        diags.push(missing("metadata.name", meta.map_or(root.pos, |m| m.pos)));
        return;
    };
    let named = meta.and_then(|m| m.get("name")).is_some();
    if !named && api_version.starts_with(KEPTN_GROUP_PREFIX) {
        diags.push(Diagnostic {
            code: "KLT002",
            severity: Severity::Error,
            message: format!("{kind} has generateName but no metadata.name"),
            file: file.to_string(),
            pos: meta.map_or(root.pos, |m| m.pos),
            object: None,
            field: Some("metadata.name".into()),
            help: Some("give it a metadata.name: tasks and apps refer to Keptn objects by name, and a generated name is known only to the API server (two objects with one generateName would also make the output depend on file order)".into()),
        });
        return;
    }
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(cow_str)
        .filter(|s| !s.is_empty());
    docs.push(Doc {
        file,
        api_version,
        kind,
        name,
        namespace,
        raw: raw.map(|(text, _)| text),
        raw_line: raw.map_or(0, |(_, line)| line),
        root,
        named,
    });
}
