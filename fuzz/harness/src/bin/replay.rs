//! `klt-fuzz-replay TARGET PATH...`: runs a target's body over corpus files or directories on
//! a stable toolchain, without libFuzzer: the smoke run's fallback, and the triage tool (a
//! crash input gives a plain Rust backtrace, a slow one its time, `--peaks` the memory figures
//! the bound was chosen from).

use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let peaks = args.first().is_some_and(|a| a == "--peaks");
    if peaks {
        args.remove(0);
    }
    let Some(name) = args.first().cloned() else {
        eprintln!("usage: klt-fuzz-replay [--peaks] TARGET PATH...");
        std::process::exit(2);
    };
    let Some((_, target)) = klt_fuzz_harness::TARGETS.iter().find(|(n, _)| *n == name) else {
        eprintln!("unknown target {name:?}");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    for a in &args[1..] {
        collect(Path::new(a), &mut files);
    }
    files.sort();
    let start = Instant::now();
    let mut worst = (0.0f64, PathBuf::new(), 0usize, 0usize);
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let t = Instant::now();
        let peak = klt_fuzz_harness::measured(&data, *target);
        let ratio = peak as f64 / data.len().max(1) as f64;
        // Below 1 KiB the fixed costs dominate and the ratio says nothing about growth.
        if data.len() >= 1024 && ratio > worst.0 {
            worst = (ratio, f.clone(), peak, data.len());
        }
        if peaks {
            println!(
                "{peak:>10} B peak {:>8} B input {ratio:>8.1} B/B {:>6} ms  {}",
                data.len(),
                t.elapsed().as_millis(),
                f.display()
            );
        }
    }
    println!(
        "{name}: replayed {} inputs in {:.1} s; worst peak {:.1} B per input byte of inputs >= 1 KiB ({} B for {} B, {})",
        files.len(),
        start.elapsed().as_secs_f64(),
        worst.0,
        worst.2,
        worst.3,
        worst.1.display()
    );
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
            collect(&e.unwrap().path(), out);
        }
    } else if p.is_file() {
        out.push(p.to_path_buf());
    }
}
