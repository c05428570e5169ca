//! Golden tests: every directory under `tests/fixtures/render/` is one case.
//!
//! A case holds `input/` (rendered as the path `input`, from inside the case directory, so
//! messages show stable relative paths), optional `args` (extra CLI arguments, one per line),
//! optional `paths` (more paths to render, one per line, relative to the case directory) and
//! the expected results: `expected.yaml` (stdout; its presence means exit 0) and/or
//! `expected.stderr` (stderr; without `expected.yaml` the exit code must be 2 and stdout
//! empty). `KLT_BLESS=1 cargo test --test golden` rewrites the expectations; review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/fixtures/render exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_case(case: &Path) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klt-render"));
    cmd.current_dir(case).arg("render");
    cmd.args(lines(&case.join("args")));
    if case.join("input").exists() {
        cmd.arg("input");
    }
    cmd.args(lines(&case.join("paths")));
    // The environment must not leak options into the run.
    for (k, _) in std::env::vars() {
        if k.starts_with("KLT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run klt-render");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

#[test]
fn golden_fixtures() {
    let bless = std::env::var_os("KLT_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "expected at least 25 fixture cases, found {}",
        cases.len()
    );
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let out = run_case(case);
        let yaml_path = case.join("expected.yaml");
        let stderr_path = case.join("expected.stderr");
        if bless {
            if out.code == 0 {
                fs::write(&yaml_path, &out.stdout).unwrap();
            } else {
                let _ = fs::remove_file(&yaml_path);
            }
            if out.stderr.is_empty() {
                let _ = fs::remove_file(&stderr_path);
            } else {
                fs::write(&stderr_path, &out.stderr).unwrap();
            }
            continue;
        }
        let expected_yaml = fs::read_to_string(&yaml_path).ok();
        let expected_stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
        let mut problems = Vec::new();
        match &expected_yaml {
            Some(y) => {
                if out.code != 0 {
                    problems.push(format!("exit {} (expected 0)", out.code));
                }
                if &out.stdout != y {
                    problems.push(diff("stdout", y, &out.stdout));
                }
                if y.trim().is_empty() {
                    problems.push(
                        "expected.yaml is empty: a success case must render something".into(),
                    );
                }
            }
            None => {
                if out.code != 2 {
                    problems.push(format!("exit {} (expected 2)", out.code));
                }
                if !out.stdout.is_empty() {
                    problems.push("stdout must be empty on errors".into());
                }
                if !expected_stderr.contains("error[") {
                    problems.push("an error case needs an expected.stderr with an error".into());
                }
            }
        }
        if out.stderr != expected_stderr {
            problems.push(diff("stderr", &expected_stderr, &out.stderr));
        }
        if !problems.is_empty() {
            failures.push(format!("== {name}\n{}", problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (KLT_BLESS=1 rewrites expectations):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn diff(what: &str, expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let ctx = |v: &[&str]| {
        v.iter()
            .skip(first.saturating_sub(2))
            .take(6)
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{what} differs at line {} ({} vs {} lines)\n  expected:\n{}\n  actual:\n{}",
        first + 1,
        e.len(),
        a.len(),
        ctx(&e),
        ctx(&a)
    )
}
