//! `gen tau-gen` from the outside: bad input gives one line naming the problem and a non-zero exit,
//! never a panic; the same seed writes the same bytes on any number of threads.

use std::path::Path;
use std::process::{Command, Output};

fn gen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gen")).arg("tau-gen").args(args).output().unwrap()
}

/// Runs a failing command; returns its first stderr line after checking exit code and no panic.
fn fails(args: &[&str]) -> String {
    let out = gen(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err.lines().next().unwrap_or("").to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bad_settings_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.jsonl");
    let o = path(&out);
    assert!(fails(&["--process", "q", "--out", o]).contains("invalid value 'q'"));
    assert!(fails(&["--modes", "1p0n,xx", "--out", o]).contains("unknown decay mode 'xx'"));
    assert!(fails(&["--count", "0", "--out", o]).contains("--count must be at least 1"));
    assert!(fails(&["--process", "flat", "--pt-min", "200", "--pt-max", "20", "--out", o]).contains("--pt-min (200) is above --pt-max (20)"));
    assert!(fails(&["--process", "h", "--polarization", "-1", "--out", o]).contains("--polarization applies only to --process flat"));
    assert!(fails(&["--process", "flat", "--polarization", "2", "--out", o]).contains("--polarization must be in [-1, 1]"));
    assert!(fails(&["--track-efficiency", "0", "--out", o]).contains("--track-efficiency"));
    assert!(fails(&["--count", "10"]).contains("--out FILE is required"));
    // Unwritable: the parent "directory" is a file.
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let bad = dir.path().join("file").join("t.jsonl");
    assert!(fails(&["--count", "10", "--out", path(&bad)]).contains("cannot create directory"));
    assert!(!out.exists());
}

#[test]
fn same_seed_same_file_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    for (p, threads) in [(&a, "1"), (&b, "2")] {
        let out = gen(&["--process", "w", "--count", "5000", "--seed", "3", "--threads", threads, "--out", path(p), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["taus"], 5000);
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text.lines().count(), 5000);
    assert!(text == std::fs::read_to_string(&b).unwrap());
}

#[test]
fn bound_reads_files_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.jsonl");
    let out = gen(&["--count", "3000", "--modes", "hadronic", "--out", path(&f)]);
    assert!(out.status.success());
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("{\"particles\": oops\n");
    std::fs::write(&f, text).unwrap();
    let first = fails(&["--bound", path(&f)]);
    assert!(first.contains(&format!("{}:3001:", f.display())), "{first}");
    let out = gen(&["--bound", path(&f), "--on-error", "skip", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 of 3001 lines"));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["taus"], 3000);
    assert!(b["best"]["iqr_over_median"].as_f64().unwrap() < b["constant"]["iqr_over_median"].as_f64().unwrap());
    assert!(fails(&["--bound", path(&dir.path().join("missing.jsonl"))]).contains("missing.jsonl"));
}
