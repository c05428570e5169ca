//! Diagnostics: findings about the user's input, returned as data.
//!
//! Every finding has a stable code from [`CODES`], a severity, the file and position it is
//! about, the object and field it concerns, and help saying what to do. Rendering them for a
//! terminal, JSON or CI annotations is the adapters' job.

use std::borrow::Cow;

use crate::yaml::{self, Pos};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Display path of the file, as given by the adapter.
    pub file: String,
    pub pos: Pos,
    /// `Kind namespace/name` of the object concerned, when known.
    pub object: Option<String>,
    /// Dotted path of the field concerned, when known.
    pub field: Option<String>,
    /// Mostly a fixed text, borrowed: a copy in every finding added up.
    pub help: Option<Cow<'static, str>>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `path:line:col: error[KLT001]: message (object, field)` on one line.
    pub fn one_line(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut s = format!(
            "{}:{}:{}: {sev}[{}]: {}",
            self.file, self.pos.line, self.pos.col, self.code, self.message
        );
        match (&self.object, &self.field) {
            (Some(o), Some(f)) => s.push_str(&format!(" [{o}, field {f}]")),
            (Some(o), None) => s.push_str(&format!(" [{o}]")),
            (None, Some(f)) => s.push_str(&format!(" [field {f}]")),
            (None, None) => {}
        }
        s
    }

    /// The stable sort key: the stage a reader fixes it in, then file, position, code,
    /// message.
    pub fn sort_key(&self) -> (Stage, &str, Pos, &str, &str) {
        (
            stage(self.code),
            &self.file,
            self.pos,
            self.code,
            &self.message,
        )
    }
}

/// The order in which a reader fixes findings: syntax first (until every file parses nothing
/// else is certain), then each object's own schema, then references between objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Syntax,
    Schema,
    Reference,
}

/// Findings about the input's text and objects as such: unreadable, unparsable, over a limit,
/// not an object, a List that is not one, the same object twice.
const SYNTAX: &[&str] = &["KLT001", "KLT002", "KLT003", "KLT029", "KLT050"];

/// Findings about one object pointing at another, or at its place among the others.
const REFERENCE: &[&str] = &[
    "KLT014", "KLT015", "KLT016", "KLT017", "KLT018", "KLT020", "KLT022", "KLT023", "KLT024",
    "KLT027", "KLT028", "KLT031", "KLT060", "KLT061", "KLT067",
];

/// "Not found" findings: what they looked for may be in a document that did not parse.
const MAY_BE_IN_A_BROKEN_DOCUMENT: &[&str] = &[
    "KLT014", "KLT016", "KLT018", "KLT020", "KLT024", "KLT031", "KLT060", "KLT061",
];

/// Findings about what an object lacks (a runner, code, a workload name) that an unknown
/// field or key of the same object may explain: `inlineScript` is why there is "no code".
const MAY_BE_A_MISPLACED_FIELD: &[&str] = &["KLT010", "KLT012", "KLT036"];
const UNKNOWN_FIELD_OR_KEY: &[&str] = &["KLT004", "KLT034"];

/// Points a "lacks" finding at the unknown field or key of the same object, if there is one.
fn mark_unknown_key_consequences(diags: &mut [Diagnostic]) {
    let causes: Vec<(String, Option<String>, String)> = diags
        .iter()
        .filter(|d| UNKNOWN_FIELD_OR_KEY.contains(&d.code) && d.object.is_some())
        .map(|d| {
            let at = match &d.field {
                Some(f) => format!("{}:{} ({f})", d.pos.line, d.pos.col),
                None => format!("{}:{}", d.pos.line, d.pos.col),
            };
            let what = if d.code == "KLT034" { "key" } else { "field" };
            (d.file.clone(), d.object.clone(), format!("{what} at {at}"))
        })
        .collect();
    for d in diags.iter_mut() {
        if !MAY_BE_A_MISPLACED_FIELD.contains(&d.code) {
            continue;
        }
        let Some((_, _, at)) = causes
            .iter()
            .find(|(file, object, _)| *file == d.file && *object == d.object)
        else {
            continue;
        };
        let note = format!("this may follow from the unknown {at}: fix that first");
        prepend_note(d, &note);
    }
}

/// Puts `note` before a finding's help, once: `finish` runs again when `check` adds its lints.
fn prepend_note(d: &mut Diagnostic, note: &str) {
    d.help = Some(match d.help.take() {
        Some(help) if help.starts_with(note) => help,
        Some(help) => format!("{note}; otherwise: {help}").into(),
        None => note.to_string().into(),
    });
}

pub fn stage(code: &str) -> Stage {
    if SYNTAX.contains(&code) {
        Stage::Syntax
    } else if REFERENCE.contains(&code) {
        Stage::Reference
    } else {
        Stage::Schema
    }
}

/// Puts findings in the order a reader fixes them, without duplicates, and marks the "not
/// found" findings that may only be consequences of a YAML error (what they look for may be
/// in the document that did not parse), so that the root cause is read first.
pub fn finish(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup();
    mark_unknown_key_consequences(diags);
    let Some(root) = diags.iter().find(|d| d.code == "KLT001" && d.is_error()) else {
        return;
    };
    let note = format!(
        "this may be a consequence of the YAML error at {}:{}:{} (what is missing may be in that document): fix that first",
        root.file, root.pos.line, root.pos.col
    );
    for d in diags.iter_mut() {
        if MAY_BE_IN_A_BROKEN_DOCUMENT.contains(&d.code) {
            prepend_note(d, &note);
        }
    }
}

/// Where a file holds Secret values, found from its text alone, so that it works for documents
/// that do not parse: in every document that looks like a Secret (`kind: Secret` in any YAML
/// or JSON spelling, also as an item of a List), everything from the first line with a `data`
/// or `stringData` key to the end of the document (the whole document when no such key is
/// found). Diagnostics located there lose their quotes ([`redact_secrets`]) and `check` shows
/// no source line from there. Erring on the side of hiding is fine: a hidden line only costs
/// context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretSpans {
    /// Byte ranges of the file text, in order.
    bytes: Vec<(usize, usize)>,
    /// The same spans as lines the way positions count them: first line and the highest last
    /// line (inclusive) of this span and all before it. Lone CRs can make the line spans of
    /// neighbouring documents overlap; the running maximum keeps lookups a binary search.
    lines: Vec<(u32, u32)>,
}

impl SecretSpans {
    /// `path` decides, as for rendering, whether the text is one JSON document or a YAML stream.
    pub fn of(path: &str, text: &str) -> SecretSpans {
        let mut spans = SecretSpans::default();
        // Cheap exit for the common case: no Secret anywhere in the file.
        if !text.contains("Secret") {
            return spans;
        }
        let chunks = if path.ends_with(".json") {
            vec![yaml::Chunk {
                text,
                body: text,
                first_line: 1,
            }]
        } else {
            yaml::split_stream(text)
        };
        for chunk in chunks {
            if !looks_like_secret(chunk.text) {
                continue;
            }
            // Chunks are slices of `text` (after a BOM at most).
            let offset = chunk.text.as_ptr() as usize - text.as_ptr() as usize;
            let start = data_key_line(chunk.text).unwrap_or(0);
            spans
                .bytes
                .push((offset + start, offset + chunk.text.len()));
            let last = chunk.first_line + line_breaks(chunk.text);
            let reach = spans.lines.last().map_or(last, |(_, r)| last.max(*r));
            spans
                .lines
                .push((chunk.first_line + line_breaks(&chunk.text[..start]), reach));
        }
        spans
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether a position on `line` may be inside a Secret's data.
    pub fn covers_line(&self, line: u32) -> bool {
        let before = self.lines.partition_point(|(first, _)| *first <= line);
        before > 0 && self.lines[before - 1].1 >= line
    }

    /// Whether the bytes `start..end` of the text touch a Secret's data.
    pub fn covers_bytes(&self, start: usize, end: usize) -> bool {
        let before = self.bytes.partition_point(|(a, _)| *a < end);
        before > 0 && self.bytes[before - 1].1 > start
    }
}

/// Line breaks as YAML counts them (LF, CRLF, and a lone CR).
fn line_breaks(s: &str) -> u32 {
    let b = s.as_bytes();
    let lone_cr = b
        .iter()
        .enumerate()
        .filter(|(i, c)| **c == b'\r' && b.get(i + 1) != Some(&b'\n'))
        .count();
    (b.iter().filter(|c| **c == b'\n').count() + lone_cr) as u32
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// A `kind` key whose value is `Secret`: block, flow and JSON style, quoted, tagged, or on
/// the next line.
fn looks_like_secret(text: &str) -> bool {
    text.match_indices("kind").any(|(i, _)| {
        if text[..i].chars().next_back().is_some_and(is_word) {
            return false;
        }
        let mut rest = &text[i + "kind".len()..];
        let skip = |r: &mut &str| {
            *r = r.trim_start_matches([' ', '\t', '\r', '\n', '"', '\'', ':']);
        };
        skip(&mut rest);
        if let Some(tagged) = rest.strip_prefix('!') {
            rest = tagged.trim_start_matches(|c: char| !c.is_whitespace());
            skip(&mut rest);
        }
        rest.strip_prefix("Secret")
            .is_some_and(|after| !after.chars().next().is_some_and(is_word))
    })
}

/// Byte offset (in `text`) of the start of the first line with a `data` or `stringData` key.
fn data_key_line(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let has_key = ["data", "stringData"].iter().any(|key| {
            line.match_indices(key).any(|(i, _)| {
                let before_ok = !line[..i].chars().next_back().is_some_and(is_word);
                let after = line[i + key.len()..]
                    .trim_start_matches(['"', '\''])
                    .trim_start_matches([' ', '\t']);
                before_ok
                    && (after.starts_with(':') || after.trim_end_matches(['\r', '\n']).is_empty())
            })
        });
        if has_key {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// Empties every quoted part (`"..."` as Rust's `{:?}` writes it, `` `x' `` as the YAML
/// parser writes a character) of a message about a Secret's data, so that neither a key nor
/// a character of a value reaches a log.
pub fn blank_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '`' => '\'',
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(c);
        let mut escaped = false;
        let mut closed = false;
        for q in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if q == '\\' && close == '"' {
                escaped = true;
            } else if q == close {
                closed = true;
                break;
            }
        }
        out.push('…');
        if closed {
            out.push(close);
        }
    }
    out
}

/// Codes whose messages quote the input at their position (the YAML parser's messages and
/// duplicate keys). Every other message quotes only names from metadata and task lists, which
/// are not Secret values, and keeps them.
const QUOTES_SOURCE: &[&str] = &["KLT001"];

/// Blanks the quotes of every diagnostic that quotes the input at a position in a Secret's
/// data. `files` are the input files as `(path, text)`, as the diagnostics name them.
pub fn redact_secrets<'a>(
    diags: &mut [Diagnostic],
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    if !diags.iter().any(|d| QUOTES_SOURCE.contains(&d.code)) {
        return;
    }
    let named: std::collections::BTreeSet<String> = diags
        .iter()
        .filter(|d| QUOTES_SOURCE.contains(&d.code))
        .map(|d| d.file.clone())
        .collect();
    let mut spans: std::collections::BTreeMap<&str, SecretSpans> = Default::default();
    for (path, text) in files {
        if named.contains(path) && !spans.contains_key(path) {
            spans.insert(path, SecretSpans::of(path, text));
        }
    }
    for d in diags.iter_mut().filter(|d| QUOTES_SOURCE.contains(&d.code)) {
        if spans
            .get(d.file.as_str())
            .is_some_and(|s| s.covers_line(d.pos.line))
        {
            d.message = blank_quotes(&d.message);
            d.help = d.help.as_deref().map(|h| blank_quotes(h).into());
        }
    }
}

/// Every diagnostic code, its default severity and what it means. The README table is
/// checked against this list by a test.
pub const CODES: &[(&str, Severity, &str)] = &[
    (
        "KLT001",
        Severity::Error,
        "YAML syntax error, duplicate key, or a file that cannot be read as UTF-8",
    ),
    (
        "KLT002",
        Severity::Error,
        "a document without apiVersion, kind or metadata.name",
    ),
    (
        "KLT003",
        Severity::Error,
        "two documents declare the same object (apiVersion group, kind, namespace, name)",
    ),
    (
        "KLT004",
        Severity::Error,
        "unknown field in a Keptn resource (checked against the Keptn CRD schema)",
    ),
    (
        "KLT005",
        Severity::Error,
        "a field of a Keptn resource has the wrong type or a required field is missing",
    ),
    (
        "KLT006",
        Severity::Error,
        "unsupported apiVersion for a Keptn kind",
    ),
    (
        "KLT007",
        Severity::Error,
        "unknown kind in the lifecycle.keptn.sh group (a misspelled Keptn kind)",
    ),
    (
        "KLT008",
        Severity::Error,
        "an object's metadata.labels or metadata.annotations is not a map, or one of its values is a list or map",
    ),
    (
        "KLT010",
        Severity::Error,
        "a KeptnTaskDefinition defines no runner (deno, python, container or function)",
    ),
    (
        "KLT011",
        Severity::Error,
        "a KeptnTaskDefinition defines more than one runner",
    ),
    (
        "KLT012",
        Severity::Error,
        "a deno/python runner has no code: no inline, httpRef, configMapRef or functionRef",
    ),
    ("KLT013", Severity::Error, "timeout is not a Go duration"),
    (
        "KLT014",
        Severity::Error,
        "functionRef names a definition that does not exist",
    ),
    (
        "KLT015",
        Severity::Error,
        "functionRef chain or cycle: the referenced definition has a functionRef itself",
    ),
    (
        "KLT016",
        Severity::Error,
        "configMapRef names a ConfigMap that is not in the input, or it lacks key `code`",
    ),
    (
        "KLT017",
        Severity::Error,
        "a Secret named by secureParameters is in the input without key SECURE_DATA",
    ),
    (
        "KLT018",
        Severity::Warning,
        "a Secret named by secureParameters is not in the input (it must exist in the cluster)",
    ),
    (
        "KLT019",
        Severity::Warning,
        "a definition sets more than one code source; which one Keptn uses is said in the message",
    ),
    (
        "KLT020",
        Severity::Error,
        "a task list names a KeptnTaskDefinition that does not exist",
    ),
    (
        "KLT021",
        Severity::Warning,
        "promotion tasks are listed; klt-render does not render them",
    ),
    (
        "KLT022",
        Severity::Error,
        "tasks are listed both in a v1alpha KeptnApp and in its KeptnAppContext",
    ),
    (
        "KLT023",
        Severity::Error,
        "a workload of a KeptnApp is not listed in it, or listed with another version",
    ),
    (
        "KLT024",
        Severity::Warning,
        "a workload listed in a KeptnApp is not in the input",
    ),
    (
        "KLT025",
        Severity::Error,
        "a KeptnTask has no taskDefinition",
    ),
    (
        "KLT026",
        Severity::Warning,
        "a lifecycle.keptn.sh kind that klt-render does not render was dropped",
    ),
    (
        "KLT027",
        Severity::Error,
        "a generated name would not be a valid Kubernetes name",
    ),
    (
        "KLT028",
        Severity::Error,
        "a sync wave leaves no room for the task waves around it (Argo CD reads waves as 64-bit integers)",
    ),
    (
        "KLT029",
        Severity::Error,
        "a `kind: List` whose items is not a list of objects",
    ),
    (
        "KLT030",
        Severity::Error,
        "a container task mounts a volume other than the single one Keptn provides",
    ),
    (
        "KLT031",
        Severity::Warning,
        "a KeptnAppContext lists tasks but no KeptnApp or workload belongs to its app",
    ),
    (
        "KLT032",
        Severity::Error,
        "a Keptn key on metadata Keptn does not read (the workload's own while its pod template carries the workload name, or the pod template's where the workload's replaces it); a warning unless listed tasks are lost",
    ),
    (
        "KLT033",
        Severity::Error,
        "Keptn keys in an annotations or labels map outside any metadata (spec.template.annotations); a warning unless it lists tasks",
    ),
    (
        "KLT034",
        Severity::Warning,
        "an unknown keptn.sh/ key on a workload, with the real key it resembles; an error when that key lists tasks",
    ),
    (
        "KLT035",
        Severity::Error,
        "a Keptn key as a label whose value the API server rejects (a list needs an annotation), or a label that an annotation of the same key overrides (a warning)",
    ),
    (
        "KLT036",
        Severity::Error,
        "a workload lists Keptn tasks but has no workload name (keptn.sh/workload, app.kubernetes.io/name), so Keptn ignores it",
    ),
    (
        "KLT040",
        Severity::Error,
        "check: task code reads an env var the runtime does not provide (a warning for python, which sees the whole environment)",
    ),
    (
        "KLT041",
        Severity::Warning,
        "check: a task definition name too long to stay readable in Job names",
    ),
    (
        "KLT042",
        Severity::Warning,
        "check: httpRef fetches task code over plain http",
    ),
    (
        "KLT043",
        Severity::Error,
        "check: a workload label or annotation value is not a string (an unquoted number or boolean)",
    ),
    (
        "KLT044",
        Severity::Warning,
        "check: task code reads SECURE_DATA, but no secret is passed to it (no secureParameters, no KeptnTask or functionRef user with one)",
    ),
    (
        "KLT045",
        Severity::Warning,
        "check: a secret is passed as SECURE_DATA to task code that never reads it",
    ),
    (
        "KLT050",
        Severity::Error,
        "the input exceeds a limit (size, documents, nesting, alias expansion, directory depth); the help says how to raise it",
    ),
    (
        "KLT060",
        Severity::Error,
        "an evaluation list names a KeptnEvaluationDefinition that does not exist",
    ),
    (
        "KLT061",
        Severity::Error,
        "an evaluation objective names a KeptnMetric, or a metric or definition names a KeptnMetricsProvider, that does not exist",
    ),
    (
        "KLT062",
        Severity::Error,
        "an evaluationTarget is not Keptn's `<` or `>` followed by a number",
    ),
    (
        "KLT063",
        Severity::Error,
        "a KeptnMetric's or v1alpha1 objective's query is empty",
    ),
    (
        "KLT064",
        Severity::Error,
        "a KeptnMetricsProvider's type is not implemented by klt-evaluate",
    ),
    (
        "KLT065",
        Severity::Error,
        "an evaluation definition's retryInterval is not a Go duration",
    ),
    (
        "KLT066",
        Severity::Error,
        "the task order (annotation klt-render.dev/task-order) is neither parallel nor sequential",
    ),
    (
        "KLT067",
        Severity::Error,
        "an evaluation Job cannot mount its provider's Secret: the provider is in another namespace",
    ),
    (
        "KLT068",
        Severity::Error,
        "a datadog KeptnMetricsProvider has no secretKeyRef (its API and application keys), or a dynatrace one none (its API token)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_sorted() {
        let mut codes: Vec<_> = CODES.iter().map(|c| c.0).collect();
        let len = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), len);
        assert!(CODES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../README.md");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| KLT")).collect();
        let expected: Vec<String> = CODES
            .iter()
            .map(|(code, sev, text)| {
                let sev = match sev {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                format!("| {code} | {sev} | {text} |")
            })
            .collect();
        assert_eq!(rows, expected, "README's code table must match diag::CODES");
    }

    #[test]
    fn secret_spans_start_at_the_data() {
        let text = "kind: ConfigMap\ndata: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n";
        let spans = SecretSpans::of("a.yaml", text);
        assert_eq!(
            (1..=10)
                .filter(|l| spans.covers_line(*l))
                .collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let data = text.find("stringData").unwrap();
        assert!(spans.covers_bytes(data, data + 3));
        assert!(!spans.covers_bytes(0, data - 1));
        // Flow, JSON, quoted, tagged and List spellings; `metadata` is not `data`.
        for secret in [
            "{kind: Secret, data: {k: v}}",
            "{\"kind\": \"Secret\", \"data\": {}}",
            "kind: 'Secret'\nmetadata: {}\ndata: {}",
            "kind: !!str Secret\ndata: {}",
            "kind: List\nitems:\n- kind: Secret\n  data: {}",
        ] {
            assert!(!SecretSpans::of("s.yaml", secret).is_empty(), "{secret}");
        }
        for other in ["kind: SecretStore\ndata: {}", "kind: ConfigMap\n# Secret\n"] {
            assert!(SecretSpans::of("o.yaml", other).is_empty(), "{other}");
        }
        let no_data = SecretSpans::of("s.yaml", "kind: Secret\nmetadata:\n  name: x\n");
        assert!(
            no_data.covers_line(1),
            "without a data key, the whole document"
        );
    }

    #[test]
    fn quotes_are_blanked() {
        assert_eq!(
            blank_quotes(r#"duplicate key "a\"b" (first at line 3)"#),
            r#"duplicate key "…" (first at line 3)"#
        );
        assert_eq!(
            blank_quotes("unexpected character: `@'"),
            "unexpected character: `…'"
        );
        assert_eq!(blank_quotes("open \"end"), "open \"…");
    }

    #[test]
    fn one_line_format() {
        let d = Diagnostic {
            code: "KLT020",
            severity: Severity::Error,
            message: "task definition \"notify\" not found".into(),
            file: "apps/a.yaml".into(),
            pos: Pos { line: 9, col: 7 },
            object: Some("KeptnAppContext demo/podtato".into()),
            field: Some("spec.preDeploymentTasks[0]".into()),
            help: None,
        };
        assert_eq!(
            d.one_line(),
            "apps/a.yaml:9:7: error[KLT020]: task definition \"notify\" not found [KeptnAppContext demo/podtato, field spec.preDeploymentTasks[0]]"
        );
    }

    #[test]
    fn a_lacking_object_is_pointed_at_its_unknown_field() {
        let d = |code: &'static str, line: u32, object: &str, field: &str| Diagnostic {
            code,
            severity: Severity::Error,
            message: String::new(),
            file: "a.yaml".into(),
            pos: Pos { line, col: 5 },
            object: Some(object.into()),
            field: Some(field.into()),
            help: Some("set code".into()),
        };
        let mut diags = vec![
            d("KLT012", 7, "KeptnTaskDefinition t", "spec.deno"),
            d(
                "KLT004",
                7,
                "KeptnTaskDefinition t",
                "spec.deno.inlineScript",
            ),
            d("KLT012", 20, "KeptnTaskDefinition other", "spec.deno"),
        ];
        finish(&mut diags);
        assert_eq!(diags[0].code, "KLT004");
        assert_eq!(
            diags[1].help.as_deref(),
            Some(
                "this may follow from the unknown field at 7:5 (spec.deno.inlineScript): fix that first; otherwise: set code"
            )
        );
        assert_eq!(
            diags[2].help.as_deref(),
            Some("set code"),
            "another object is not marked"
        );
        // `check` finishes again after adding its lints: every note stays single.
        let once = diags.clone();
        finish(&mut diags);
        assert_eq!(diags, once);
    }

    #[test]
    fn the_yaml_error_note_is_added_once() {
        let d = |code: &'static str, file: &str, help: Option<&str>| Diagnostic {
            code,
            severity: Severity::Error,
            message: String::new(),
            file: file.into(),
            pos: Pos { line: 9, col: 7 },
            object: None,
            field: None,
            help: help.map(|h| Cow::Owned(h.to_string())),
        };
        let mut diags = vec![
            d("KLT020", "app.yaml", Some("add the KeptnTaskDefinition")),
            d("KLT001", "tasks.yaml", None),
        ];
        finish(&mut diags);
        finish(&mut diags);
        assert_eq!(
            diags[1].help.as_deref(),
            Some(
                "this may be a consequence of the YAML error at tasks.yaml:9:7 (what is missing may be in that document): fix that first; otherwise: add the KeptnTaskDefinition"
            )
        );
    }
}
