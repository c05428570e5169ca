//! Diagnostics: findings about the user's input, returned as data.
//!
//! Every finding has a stable code from [`CODES`], a severity, the file and position it is
//! about, the object and field it concerns, and help saying what to do. Rendering them for a
//! terminal, JSON or CI annotations is the adapters' job.

use crate::yaml::Pos;

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
    pub help: Option<String>,
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

    /// The stable sort key: file, position, code, message.
    pub fn sort_key(&self) -> (&str, Pos, &str, &str) {
        (&self.file, self.pos, self.code, &self.message)
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
        "evaluations or promotion tasks are listed; klt-render does not render them",
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
        "KLT050",
        Severity::Error,
        "the input exceeds a limit (size, documents, nesting, alias expansion, directory depth); the help says how to raise it",
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
}
