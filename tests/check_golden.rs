//! Transcript tests of `klt-render check`: every directory under `tests/fixtures/check/` is a
//! case with `input/`, optional `args`, and the expected `expected.stdout`, `expected.stderr`
//! and `expected.status` (the exit code). `KLT_BLESS=1` rewrites them. A second test checks
//! that every valid example and success fixture passes `check` without errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn args(case: &Path) -> Vec<String> {
    fs::read_to_string(case.join("args"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn check(case: &Path, extra: &[String], paths: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klt-render"));
    cmd.current_dir(case).arg("check").args(extra).args(paths);
    for (k, _) in std::env::vars() {
        if k.starts_with("KLT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_transcripts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let bless = std::env::var_os("KLT_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = dirs(&root);
    assert!(cases.len() >= 15);
    for case in &cases {
        let (code, stdout, stderr) = check(case, &args(case), &["input"]);
        let files = [
            ("expected.status", format!("{code}\n")),
            ("expected.stdout", stdout),
            ("expected.stderr", stderr),
        ];
        for (name, actual) in files {
            let path = case.join(name);
            if bless {
                fs::write(&path, &actual).unwrap();
            } else if fs::read_to_string(&path).unwrap_or_default() != actual {
                failures.push(format!("{}: {name} differs:\n{actual}", case.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_valid_example_passes_check() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases: Vec<(PathBuf, Vec<String>, String)> = dirs(&repo.join("examples"))
        .into_iter()
        .map(|d| (d, vec![], ".".to_string()))
        .collect();
    for d in dirs(&repo.join("tests/fixtures/render")) {
        if d.join("expected.yaml").exists() && !d.join("paths").exists() {
            let a = args(&d);
            cases.push((d, a, "input".to_string()));
        }
    }
    assert!(cases.len() > 20);
    for (dir, a, path) in cases {
        let (code, _, stderr) = check(&dir, &a, &[&path]);
        assert_eq!(code, 0, "{}:\n{stderr}", dir.display());
    }
}
