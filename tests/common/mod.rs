//! Helpers for tests that run the `gen` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn gen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gen"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run gen")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs gen and insists it succeeded; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = gen(args);
    assert!(o.status.success(), "gen {args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

/// Runs gen and insists it failed with a one-line error containing every needle, without a panic.
pub fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = gen(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "gen {args:?} should fail, printed:\n{}{err}", stdout(&o));
    assert!(!err.contains("panicked"), "gen {args:?} panicked:\n{err}");
    // Our errors are one line; clap's usage errors add the possible values below theirs.
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("gen {args:?}: no error line:\n{err}"));
    for n in needles {
        assert!(err.contains(n), "gen {args:?}: error {line:?} does not mention {n:?}");
    }
    line.to_string()
}

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

/// The shared real corpus, when this machine has it.
pub fn shared_corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/recipes/recipes.json");
    p.exists().then_some(p)
}
