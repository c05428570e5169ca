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
            " (+{} more error(s); run `klt-render check` locally to see all)",
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
///
/// A line inside a Secret's data is never shown (CI logs are not a place for Secret values).
pub fn with_snippets(diags: &[Diagnostic], files: &[SourceFile]) {
    let stderr = std::io::stderr();
    let mut err = std::io::BufWriter::new(stderr.lock());
    let mut sources = Sources::new(files);
    for d in diags {
        let _ = writeln!(err, "{}", d.one_line());
        let line = sources.line(&d.file, d.pos.line);
        if let Some(line) = line {
            let num = d.pos.line.to_string();
            let pad = " ".repeat(num.len());
            let _ = writeln!(err, "{pad} |");
            match line {
                Snippet::Hidden => {
                    let _ = writeln!(err, "{num} | (not shown: inside a Secret's data)");
                }
                Snippet::Text { line, ascii } => {
                    let (shown, caret_at) = window(line, ascii, d.pos.col);
                    let _ = writeln!(err, "{num} | {shown}");
                    let _ = writeln!(err, "{pad} | {caret_at}^");
                }
            }
            if let Some(help) = &d.help {
                let _ = writeln!(err, "{pad} = help: {help}");
            }
        } else if let Some(help) = &d.help {
            let _ = writeln!(err, "  = help: {help}");
        }
    }
    let _ = err.flush();
}

enum Snippet<'t> {
    /// `ascii`: the file is ASCII, so columns are byte offsets.
    Text {
        line: &'t str,
        ascii: bool,
    },
    Hidden,
}

/// The input files with their lines indexed once, on first use, so that each finding's line is
/// a lookup (many findings in one file would otherwise rescan it for every one).
struct Sources<'f> {
    /// The files by path: a search of the list for each file with findings was quadratic
    /// (10,000 findings in as many files among 30,000 took a tenth of `check`).
    files: std::collections::HashMap<&'f str, &'f SourceFile>,
    indexed: std::collections::HashMap<&'f str, Indexed<'f>>,
}

struct Indexed<'f> {
    text: &'f str,
    /// Byte offset of each line's start, as `str::lines` splits them.
    starts: Vec<usize>,
    ascii: bool,
    secrets: klt_render::diag::SecretSpans,
}

impl<'f> Sources<'f> {
    fn new(files: &'f [SourceFile]) -> Self {
        Sources {
            // The first file of a path wins, as the search found it.
            files: files.iter().rev().map(|f| (f.path.as_str(), f)).collect(),
            indexed: Default::default(),
        }
    }

    fn line(&mut self, path: &str, line: u32) -> Option<Snippet<'f>> {
        if line == 0 {
            return None;
        }
        if !self.indexed.contains_key(path) {
            let file = *self.files.get(path)?;
            let text = file.text.as_str();
            let starts = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
            let secrets = klt_render::diag::SecretSpans::of(&file.path, text);
            self.indexed.insert(
                file.path.as_str(),
                Indexed {
                    text,
                    starts,
                    ascii: text.is_ascii(),
                    secrets,
                },
            );
        }
        let f = self.indexed.get(path)?;
        let start = *f.starts.get(line as usize - 1)?;
        let shown = f.text[start..].lines().next()?;
        if f.secrets.covers_line(line) || f.secrets.covers_bytes(start, start + shown.len()) {
            return Some(Snippet::Hidden);
        }
        Some(Snippet::Text {
            line: shown,
            ascii: f.ascii,
        })
    }
}

/// Longest source line shown in full; longer ones (minified JSON) are cut around the column.
const MAX_SHOWN: usize = 512;

/// The part of `line` to show and the caret's indent (tabs kept, so the caret lines up).
fn window(line: &str, ascii: bool, col: u32) -> (std::borrow::Cow<'_, str>, String) {
    let col = (col as usize).saturating_sub(1);
    let indent = |s: &str| -> String {
        s.chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect()
    };
    if line.len() <= MAX_SHOWN {
        let before: String = line.chars().take(col).collect();
        return (line.into(), indent(&before));
    }
    // Byte offset of the `i`th character; constant time in ASCII files, which is where very
    // long lines with many findings come from.
    let count = if ascii {
        line.len()
    } else {
        line.chars().count()
    };
    let byte = |i: usize| {
        if ascii {
            i.min(line.len())
        } else {
            line.char_indices().nth(i).map_or(line.len(), |(b, _)| b)
        }
    };
    let col = col.min(count);
    let from = col.saturating_sub(MAX_SHOWN / 2);
    let to = (from + MAX_SHOWN).min(count);
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    let prefix_len = shown.chars().count();
    shown.push_str(&line[byte(from)..byte(to)]);
    if to < count {
        shown.push('…');
    }
    let caret = " ".repeat(prefix_len) + &indent(&line[byte(from)..byte(col)]);
    (shown.into(), caret)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_lines_are_the_lines_of_the_text() {
        for text in [
            "",
            "a",
            "a\n",
            "a\nb",
            "a\r\nb\r\n",
            "a\n\n\nb\n",
            "a\rb\nc\r",
            "\u{feff}kind: x\n  ü: ß\n",
        ] {
            let files = [SourceFile {
                path: "f.yaml".into(),
                text: text.into(),
            }];
            let mut sources = Sources::new(&files);
            for n in 1..8u32 {
                let expected = text.lines().nth(n as usize - 1);
                let got = match sources.line("f.yaml", n) {
                    Some(Snippet::Text { line, .. }) => Some(line),
                    Some(Snippet::Hidden) => panic!("no Secret here"),
                    None => None,
                };
                assert_eq!(got, expected, "{text:?} line {n}");
            }
            assert!(sources.line("f.yaml", 0).is_none());
            assert!(sources.line("other.yaml", 1).is_none());
        }
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let short = "\tkey: value";
        assert_eq!(window(short, true, 3), (short.into(), "\t ".to_string()));
        let long = format!("{}X{}", "a".repeat(10_000), "b".repeat(10_000));
        for ascii in [true, false] {
            let (shown, caret) = window(&long, ascii, 10_001);
            assert_eq!(shown.chars().count(), MAX_SHOWN + 2, "two ellipses");
            assert!(shown.starts_with('…') && shown.ends_with('…'));
            let at = caret.chars().count();
            assert_eq!(shown.chars().nth(at), Some('X'), "caret under the column");
        }
        let (shown, caret) = window(&long, true, 1);
        assert!(!shown.starts_with('…') && shown.ends_with('…'));
        assert_eq!(caret, "");
    }

    #[test]
    fn secret_data_lines_are_hidden() {
        let files = [SourceFile {
            path: "s.yaml".into(),
            text: "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: v\n"
                .into(),
        }];
        let mut sources = Sources::new(&files);
        assert!(matches!(
            sources.line("s.yaml", 4),
            Some(Snippet::Text { .. })
        ));
        assert!(matches!(sources.line("s.yaml", 5), Some(Snippet::Hidden)));
        assert!(matches!(sources.line("s.yaml", 6), Some(Snippet::Hidden)));
    }
}
