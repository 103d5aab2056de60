//! `gen train-recipes` and `gen eval` end to end on the small fixture: exact resume, checkpoints,
//! and every bad input the issue lists.

mod common;
use common::*;

fn train_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train-recipes", "--data", data, "--out", out, "--hidden", "24", "--embed", "8", "--layers", "2",
        "--dropout", "0.2", "--batch", "4", "--seq", "16", "--log-every", "1", "--eval-every", "3",
        "--warmup", "2", "--val-fraction", "0.1",
    ];
    a.extend_from_slice(extra);
    a
}

fn train_bpcs(dir: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("train_bpc").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["train_bpc"].as_f64().unwrap()))
        .collect()
}

#[test]
fn resume_continues_exactly() {
    let data = fixture("recipes_small.json");
    let tmp = tempfile::tempdir().unwrap();
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    let (full_s, part_s) = (full.to_str().unwrap(), part.to_str().unwrap());
    ok(&train_args(&data, full_s, &["--steps", "8"]));
    // Stopped half way through the same plan (the cosine horizon stays 8 steps).
    ok(&train_args(&data, part_s, &["--steps", "4", "--decay-steps", "8"]));
    ok(&["train-recipes", "--data", &data, "--resume", part_s, "--steps", "8", "--log-every", "1", "--eval-every", "3"]);
    let (a, b) = (train_bpcs(&full), train_bpcs(&part));
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "resumed run diverged from the uninterrupted one");
    for f in ["model.safetensors", "config.json", "tokenizer.json", "optimizer.safetensors", "train_state.json", "loss.png", "best/model.safetensors"] {
        assert!(full.join(f).exists(), "missing {f}");
    }
    // The checkpoint evaluates through `gen eval` with the same bpc definition.
    let v: serde_json::Value = serde_json::from_str(&ok(&["eval", "--checkpoint", full_s, "--data", &data, "--json"])).unwrap();
    assert_eq!(v["recipes"], 48);
    let bpc = v["bpc"].as_f64().unwrap();
    assert!(bpc > 1.0 && bpc < 7.0, "{bpc}");
}

#[test]
fn bad_training_input_is_refused() {
    let data = fixture("recipes_small.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let out_s = out.to_str().unwrap();
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--arch", "cnn"], &["cnn"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--hidden", "0"], &["--hidden"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--seq", "1"], &["--seq"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--batch", "5000"], &["--batch", "lower"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--dropout", "1.5"], &["--dropout"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--time", "soon"], &["soon"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--device", "tpu"], &["tpu"]);

    ok(&["train-recipes", "--data", &data, "--out", out_s, "--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "8", "--steps", "2", "--eval-every", "2"]);
    fails(&["train-recipes", "--data", &data, "--out", out_s, "--steps", "2"], &["already holds", "--resume"]);
    fails(&["train-recipes", "--data", &data, "--resume", out_s, "--arch", "gru"], &["--arch"]);
    fails(&["train-recipes", "--data", &data, "--resume", out_s, "--batch", "8"], &["--batch"]);
    fails(&["train-recipes", "--data", &fixture("tiny.txt"), "--min-char-count", "1", "--resume", out_s], &["vocabulary"]);
    fails(&["train-recipes", "--data", &data, "--resume", tmp.path().join("nope").to_str().unwrap()], &["not found"]);

    // A corrupt weights file is named, and nothing is overwritten.
    std::fs::write(out.join("model.safetensors"), b"not a tensor file").unwrap();
    fails(&["train-recipes", "--data", &data, "--resume", out_s, "--steps", "4"], &["model.safetensors", "corrupt"]);
    fails(&["eval", "--checkpoint", out_s, "--data", &data], &["model.safetensors", "corrupt"]);
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), b"not a tensor file");
}

#[test]
fn ctrl_c_saves_a_resumable_checkpoint() {
    use std::io::{BufRead, BufReader};
    let data = fixture("recipes_small.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gen"))
        .args(train_args(&data, out.to_str().unwrap(), &["--steps", "1000000"]))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait until training is under way, then interrupt it like a user would.
    for line in lines.by_ref() {
        if line.unwrap().starts_with("step 3") {
            break;
        }
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted at step") && l.contains("--resume")), "{rest:?}");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("train_state.json")).unwrap()).unwrap();
    assert!(state["step"].as_u64().unwrap() >= 3);
    ok(&["train-recipes", "--data", &data, "--resume", out.to_str().unwrap(), "--steps", &(state["step"].as_u64().unwrap() + 2).to_string()]);
}

#[test]
fn diverging_training_stops_and_keeps_the_last_good_checkpoint() {
    let data = fixture("recipes_small.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nan");
    let o = out.to_str().unwrap();
    let err = fails(
        &["train-recipes", "--data", &data, "--out", o, "--hidden", "16", "--embed", "8", "--batch", "4", "--seq", "16",
          "--steps", "50", "--lr", "1e12", "--clip", "0", "--warmup", "0", "--eval-every", "2"],
        &["NaN", "last good checkpoint"],
    );
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("train_state.json")).unwrap()).unwrap();
    assert!(err.contains(&format!("from step {}", state["step"])), "{err}");
    // What was kept still evaluates to a finite number.
    let v: serde_json::Value = serde_json::from_str(&ok(&["eval", "--checkpoint", o, "--data", &data, "--json"])).unwrap();
    assert!(v["bpc"].as_f64().unwrap().is_finite());
}

#[test]
fn transformer_trains_resumes_exactly_and_samples_past_its_context() {
    let data = fixture("recipes_small.json");
    let tmp = tempfile::tempdir().unwrap();
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    let (full_s, part_s) = (full.to_str().unwrap(), part.to_str().unwrap());
    let args = |out: &'static str| -> Vec<String> {
        ["train-recipes", "--data", &data, "--out", out, "--arch", "transformer", "--dim", "16", "--heads", "2",
         "--layers", "2", "--context", "32", "--batch", "4", "--dropout", "0.1", "--log-every", "1",
         "--eval-every", "3", "--warmup", "2", "--val-fraction", "0.1"]
            .iter().map(|s| s.to_string()).collect()
    };
    let run = |out: &str, extra: &[&str]| {
        let mut a = args("OUT");
        a.iter_mut().filter(|s| *s == "OUT").for_each(|s| *s = out.to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    run(full_s, &["--steps", "6"]);
    run(part_s, &["--steps", "3", "--decay-steps", "6"]);
    ok(&["train-recipes", "--data", &data, "--resume", part_s, "--steps", "6", "--log-every", "1", "--eval-every", "3"]);
    assert_eq!(train_bpcs(&full), train_bpcs(&part));
    assert_eq!(train_bpcs(&full).len(), 6);

    // A prime longer than the context slides instead of failing; generation runs past the context.
    let prime = "Title: A very long title that is much longer than thirty-two characters\n";
    ok(&["sample", "--checkpoint", full_s, "--prime", prime, "--max-chars", "100", "--seed", "1"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&["eval", "--checkpoint", full_s, "--data", &data, "--json"])).unwrap();
    assert!(v["bpc"].as_f64().unwrap().is_finite());

    fails(&["train-recipes", "--data", &data, "--resume", full_s, "--arch", "lstm"], &["--arch"]);
    fails(&["train-recipes", "--data", &data, "--resume", full_s, "--context", "64"], &["--context"]);
    let o = tmp.path().join("x");
    let o = o.to_str().unwrap();
    fails(&["train-recipes", "--data", &data, "--out", o, "--arch", "transformer", "--dim", "30", "--heads", "4"], &["--heads", "--dim"]);
    fails(&["train-recipes", "--data", &data, "--out", o, "--arch", "transformer", "--seq", "64"], &["--seq"]);
    fails(&["train-recipes", "--data", &data, "--out", o, "--arch", "transformer", "--hidden", "64"], &["--hidden", "--dim"]);
    fails(&["train-recipes", "--data", &data, "--out", o, "--arch", "lstm", "--heads", "2"], &["--heads"]);
}
