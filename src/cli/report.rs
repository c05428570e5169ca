//! How diagnostics are shown: one line each (`path:line:col: error[CODE]: ...`) plus help.

use std::io::Write;

use klt_render::Diagnostic;

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
