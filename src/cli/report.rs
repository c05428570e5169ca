//! How diagnostics are shown: one line each (`path:line:col: error[CODE]: ...`) plus help.

use std::io::Write;

use klt_render::{Diagnostic, Severity, SourceFile};

pub fn human(diags: &[Diagnostic]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for d in diags {
        let _ = writeln!(err, "{}", d.one_line());
        if let Some(help) = &d.help {
            let _ = writeln!(err, "  help: {help}");
        }
    }
}

/// The single stderr line Argo CD shows for a failed generate: the first error with its help,
/// and how many more there are.
pub fn single_line(diags: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
    let Some(first) = errors.first() else {
        return String::new();
    };
    let mut line = first.one_line();
    if let Some(help) = &first.help {
        line.push_str("; help: ");
        line.push_str(help);
    }
    if errors.len() > 1 {
        line.push_str(&format!(
            " (+{} more error(s); run `klt-render render` locally to see all)",
            errors.len() - 1
        ));
    }
    line
}

/// Human output with the offending source line under each finding:
///
/// ```text
/// tasks.yaml:9:5: error[KLT004]: unknown field "secureParameter" ... [KeptnTaskDefinition t, field spec.deno.secureParameter]
///    |
///  9 |     secureParameter:
///    |     ^
///    = help: did you mean "secureParameters"?
/// ```
pub fn with_snippets(diags: &[Diagnostic], files: &[SourceFile]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for d in diags {
        let _ = writeln!(err, "{}", d.one_line());
        let line = files
            .iter()
            .find(|f| f.path == d.file)
            .and_then(|f| f.text.lines().nth((d.pos.line as usize).saturating_sub(1)));
        if let Some(line) = line.filter(|_| d.pos.line > 0) {
            let num = d.pos.line.to_string();
            let pad = " ".repeat(num.len());
            let caret_at: String = line
                .chars()
                .take((d.pos.col as usize).saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(err, "{pad} |");
            let _ = writeln!(err, "{num} | {line}");
            let _ = writeln!(err, "{pad} | {caret_at}^");
            if let Some(help) = &d.help {
                let _ = writeln!(err, "{pad} = help: {help}");
            }
        } else if let Some(help) = &d.help {
            let _ = writeln!(err, "  = help: {help}");
        }
    }
}

/// Findings as a JSON list, one object per finding with stable keys.
pub fn json(diags: &[Diagnostic]) -> String {
    let list: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            serde_json::json!({
                "code": d.code,
                "severity": d.severity,
                "message": d.message,
                "file": d.file,
                "line": d.pos.line,
                "column": d.pos.col,
                "object": d.object,
                "field": d.field,
                "help": d.help,
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).expect("JSON of strings and numbers")
}

/// A GitHub Actions workflow command (`::error file=…,line=…,col=…,title=…::message`).
pub fn github(d: &Diagnostic) -> String {
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    // Workflow commands escape % CR LF in data, and also : , in properties.
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let mut message = d.message.clone();
    if let Some(o) = &d.object {
        message.push_str(&format!(" [{o}]"));
    }
    if let Some(h) = &d.help {
        message.push_str(&format!("\nhelp: {h}"));
    }
    format!(
        "::{level} file={},line={},col={},title={}::{}",
        prop(&d.file),
        d.pos.line,
        d.pos.col,
        prop(d.code),
        data(&message)
    )
}
