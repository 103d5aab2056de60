//! `gen tau-rnn` from the outside: a tiny study end to end (report keys, rnn beats const, the
//! checkpoint evaluates), the shipped checkpoint, and bad input as one line naming the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gen(sub: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gen")).arg(sub).args(args).output().unwrap()
}

fn ok(sub: &str, args: &[&str]) -> String {
    let out = gen(sub, args);
    assert!(out.status.success(), "{sub} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a failing `gen tau-rnn`; returns its `error:` line after checking exit code, no panic, one line.
fn fails(args: &[&str]) -> String {
    let out = gen("tau-rnn", args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {err}");
    errors[0].to_string()
}

fn p(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn taus(dir: &Path, name: &str, count: usize, seed: u64, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let (count, seed) = (count.to_string(), seed.to_string());
    let mut args = vec!["--count", &count, "--seed", &seed, "--modes", "hadronic", "--out", p(&out)];
    args.extend_from_slice(extra);
    ok("tau-gen", &args);
    out
}

const TINY: [&str; 14] = ["--n-train", "6000", "--n-val", "2000", "--n-test", "4000", "--epochs", "6", "--hidden", "16", "--bootstrap", "20", "--batch", "256"];

#[test]
fn tiny_study_reports_every_model_and_its_checkpoint_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = TINY.to_vec();
    args.extend(["--out", p(&out), "--json"]);
    let r: serde_json::Value = serde_json::from_str(&ok("tau-rnn", &args)).unwrap();
    assert_eq!(r["n_test"], 4000);
    assert!(r["bound"]["resolution"].as_f64().unwrap() > 0.1);
    for m in ["const", "jet", "deepsets", "rnn"] {
        let model = &r["models"][m];
        assert!((model["response"].as_f64().unwrap() - 1.0).abs() < 0.05, "{m}: {model}");
        assert!(model["resolution"].as_f64().unwrap() > 0.0, "{m}");
        assert!(model["per_mode"]["1p1n"]["resolution"].as_f64().is_some(), "{m}");
    }
    let res = |m: &str| r["models"][m]["resolution"].as_f64().unwrap();
    assert!(res("rnn") < 0.8 * res("const"), "rnn {} vs const {}", res("rnn"), res("const"));
    assert!(r["differences"]["rnn-jet"]["err"].as_f64().unwrap() > 0.0);
    for f in ["report.json", "report.md", "response.png", "resolution_vs_pt.png", "val_loss.png", "checkpoint/config.json", "checkpoint/scaling.json", "checkpoint/rnn.safetensors", "checkpoint/README.md"] {
        assert!(out.join(f).exists(), "{f} missing");
    }

    // The checkpoint evaluates a file without training, and gives the same numbers on the same sample.
    let test = taus(dir.path(), "test.jsonl", 4000, 5, &[]);
    let ckpt = out.join("checkpoint");
    let eval_out = dir.path().join("eval");
    let e: serde_json::Value = serde_json::from_str(&ok("tau-rnn", &["--checkpoint", p(&ckpt), "--test", p(&test), "--bootstrap", "20", "--out", p(&eval_out), "--json"])).unwrap();
    assert_eq!(e["n_test"], 4000);
    // The generated test sample is seed 3·1+2 = 5; the file holds it rounded to 5 decimals.
    let (a, b) = (e["models"]["rnn"]["resolution"].as_f64().unwrap(), r["models"]["rnn"]["resolution"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-3 * b, "{a} vs {b}");
    assert!(e["models"]["rnn"]["training"].is_null());

    // A checkpoint of another feature set, and taus longer than training saw.
    let scaling = std::fs::read_to_string(ckpt.join("scaling.json")).unwrap();
    std::fs::write(ckpt.join("scaling.json"), scaling.replace("\"log_e\"", "\"e\"")).unwrap();
    let msg = fails(&["--checkpoint", p(&ckpt), "--test", p(&test), "--out", p(&eval_out)]);
    assert!(msg.contains("feature set") && msg.contains("retrain"), "{msg}");
    std::fs::write(ckpt.join("scaling.json"), scaling).unwrap();
    let long = taus(dir.path(), "long.jsonl", 3000, 6, &["--max-particles", "9"]);
    let msg = fails(&["--checkpoint", p(&ckpt), "--test", p(&long), "--out", p(&eval_out)]);
    assert!(msg.contains("trained on at most 5") && msg.contains("--max-particles 5"), "{msg}");
}

#[test]
fn shipped_checkpoint_evaluates_a_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let test = taus(dir.path(), "h.jsonl", 5000, 77, &[]);
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/tau-rnn");
    let out = dir.path().join("eval");
    let r: serde_json::Value = serde_json::from_str(&ok("tau-rnn", &["--checkpoint", p(&ckpt), "--test", p(&test), "--bootstrap", "20", "--out", p(&out), "--json"])).unwrap();
    let res = |m: &str| r["models"][m]["resolution"].as_f64().unwrap();
    let bound = r["bound"]["resolution"].as_f64().unwrap();
    assert!(res("rnn") < 1.1 * bound && res("rnn") < 0.7 * res("const"), "rnn {} bound {bound} const {}", res("rnn"), res("const"));
    assert!((r["models"]["rnn"]["response"].as_f64().unwrap() - 1.0).abs() < 0.02);
}

#[test]
fn bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let good = taus(d, "good.jsonl", 300, 1, &[]);
    let file = |name: &str, text: &str| {
        let f = d.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let empty = file("empty.jsonl", "\n");
    let recipe = file("recipe.jsonl", "{\"title\":\"soup\",\"ingredients\":[\"water\"]}\n");
    let line = std::fs::read_to_string(&good).unwrap().lines().next().unwrap().to_string();
    let nan = file("nan.jsonl", &format!("{line}\n{}\n", line.replacen("\"pt\":", "\"pt\":NaN,\"x\":", 1)));
    let o = p(&out);
    assert!(fails(&["--cell", "transformer"]).contains("invalid value 'transformer'"));
    assert!(fails(&["--models", "rnn,bdt"]).contains("invalid value 'bdt'"));
    let msg = fails(&["--train", p(&empty), "--test", p(&good), "--out", o]);
    assert!(msg.contains("empty.jsonl: no taus"), "{msg}");
    let msg = fails(&["--train", p(&recipe), "--test", p(&good), "--out", o]);
    assert!(msg.contains("recipe.jsonl:1") && msg.contains("missing field `particles`"), "{msg}");
    let msg = fails(&["--train", p(&good), "--test", p(&nan), "--out", o]);
    assert!(msg.contains("nan.jsonl:2") && msg.contains("NaN"), "{msg}");
    let msg = fails(&["--checkpoint", p(&d.join("nowhere")), "--test", p(&good), "--out", o]);
    assert!(msg.contains("checkpoint directory not found"), "{msg}");
    let msg = fails(&["--checkpoint", p(d), "--test", p(&good), "--out", o]);
    assert!(msg.contains("not a gen tau-rnn checkpoint"), "{msg}");
    assert!(fails(&["--checkpoint", p(d), "--train", p(&good)]).contains("drop --train"));
    assert!(fails(&["--val", p(&good)]).contains("--val needs --train"));
    assert!(fails(&["--lr", "0"]).contains("--lr must be a positive number"));
    assert!(fails(&["--photon-scale=-1", "--out", o]).contains("--photon-scale must be positive"));
}
