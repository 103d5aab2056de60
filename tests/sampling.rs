//! Generation: the plain-Rust CPU stepper computes what the candle model computes; seeds fix output;
//! a stream's text does not depend on the batch; bad sampling options are refused.

mod common;
use candle_core::{DType, Device};
use common::*;
use gen::checkpoint::Checkpoint;
use gen::model::rnn_lm::RnnConfig;
use gen::model::{CharModel, ModelConfig};
use gen::sample::{generate, SampleSettings, Stepper};
use gen::tokenizer::CharTokenizer;

fn model(cfg: fn(RnnConfig) -> ModelConfig) -> Checkpoint {
    let tok = CharTokenizer::build(["Title: Soup\nIngredients:\n- 1 egg\nInstructions:\nBoil it.\n"], 1).unwrap();
    let c = RnnConfig { vocab: tok.vocab_size(), embed: 6, hidden: 10, layers: 2, dropout: 0.0 };
    Checkpoint::init(cfg(c), tok, &Device::Cpu, 7).unwrap()
}

#[test]
fn fast_stepper_matches_candle_ops() {
    for cfg in [ModelConfig::Lstm as fn(RnnConfig) -> ModelConfig, ModelConfig::Gru, ModelConfig::Rnn] {
        let ck = model(cfg);
        // The stepper keeps its matrices in f16; with weights that are already f16 values it must
        // compute what the candle model computes.
        for (_, v) in ck.named_vars() {
            v.set(&v.as_tensor().to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap()).unwrap();
        }
        let CharModel::Rnn(m) = &ck.model else { unreachable!("built as an RNN") };
        let dev = Device::Cpu;
        let mut fast = Stepper::new(&ck.model, 2, &dev).unwrap();
        assert!(matches!(fast, Stepper::FastRnn(..)));
        let mut slow = Stepper::Rnn { model: m, state: m.zero_state(2, &dev).unwrap(), device: dev.clone() };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for t in [[0u32, 3], [5, 2], [7, 7], [1, 4]] {
            fast.step(&t, &mut a).unwrap();
            slow.step(&t, &mut b).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{} {x} vs {y}", ck.config.arch());
            }
        }
    }
}

#[test]
fn seeds_fix_the_output_and_streams_are_independent() {
    let ck = model(ModelConfig::Lstm);
    let s = SampleSettings { temperature: 1.0, top_k: Some(20), top_p: Some(0.95), seed: 11, max_chars: 60, stop_at_eor: true, no_repeat_ingredients: false };
    let run = |n: usize, seed: u64| {
        let s = SampleSettings { seed, ..s.clone() };
        generate(&ck.model, &ck.tokenizer, &[], n, &s, &Device::Cpu, &mut |_, _| {}).unwrap()
    };
    let (one, three) = (run(1, 11), run(3, 11));
    assert_eq!(one[0].text, three[0].text);
    assert_eq!(run(3, 11).iter().map(|g| g.text.clone()).collect::<Vec<_>>(), three.iter().map(|g| g.text.clone()).collect::<Vec<_>>());
    assert_ne!(three[0].text, three[1].text);
    assert_ne!(run(1, 12)[0].text, one[0].text);
}

#[test]
fn bad_sampling_options_are_refused() {
    let ck = model(ModelConfig::Gru);
    let tmp = tempfile::tempdir().unwrap();
    ck.save_model(tmp.path()).unwrap();
    let d = tmp.path().to_str().unwrap();
    fails(&["sample", "--checkpoint", d, "--temperature", "0"], &["--temperature"]);
    fails(&["sample", "--checkpoint", d, "--temperature", "NaN"], &["--temperature"]);
    fails(&["sample", "--checkpoint", d, "--temperature", "-1"], &["--temperature"]);
    fails(&["sample", "--checkpoint", d, "--top-p", "1.5"], &["--top-p"]);
    fails(&["sample", "--checkpoint", d, "--top-p", "0"], &["--top-p"]);
    fails(&["sample", "--checkpoint", d, "--top-k", "0"], &["--top-k"]);
    fails(&["sample", "--checkpoint", d, "--prime", ""], &["prime", "empty"]);
    fails(&["sample", "--checkpoint", d, "--title", "Crème Brûlée"], &["'è'", "'û'"]);
    fails(&["sample", "--checkpoint", tmp.path().join("nope").to_str().unwrap()], &["not found"]);
    fails(&["sample", "--checkpoint", env!("CARGO_MANIFEST_DIR")], &["config.json"]);
    // A tokenizer from another model.
    let other = CharTokenizer::build(["abc"], 1).unwrap();
    other.save(&tmp.path().join("tokenizer.json")).unwrap();
    fails(&["sample", "--checkpoint", d], &["tokenizer"]);

    let ck = model(ModelConfig::Gru);
    ck.save_model(tmp.path()).unwrap();
    let out = ok(&["sample", "--checkpoint", d, "--seed", "5", "-n", "3", "--max-chars", "40", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 3);
    let again = ok(&["sample", "--checkpoint", d, "--seed", "5", "-n", "3", "--max-chars", "40", "--format", "json"]);
    assert_eq!(out, again);
}

#[test]
fn judge_measures_samples_and_real_recipes() {
    let ck = model(ModelConfig::Lstm);
    let tmp = tempfile::tempdir().unwrap();
    ck.save_model(tmp.path()).unwrap();
    let d = tmp.path().to_str().unwrap();
    let data = fixture("recipes_small.json");
    // No recipe fits in 30 characters: whatever an untrained model writes is invalid.
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["judge", "--checkpoint", d, "-n", "3", "--max-chars", "30", "--seed", "1", "--data", &data, "--json"])).unwrap();
    assert_eq!(j["samples"], 3);
    assert_eq!(j["valid_structure"], 0.0);
    assert!((0.0..=1.0).contains(&j["unfinished"].as_f64().unwrap()), "{j}");
    assert!(j["novel_titles"].is_number(), "{j}");
    // Real held-out recipes are the reference: all valid, all finished.
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["judge", "--reference", "--data", &data, "--val-fraction", "0.3", "--json"])).unwrap();
    assert!(r["samples"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["valid_structure"], 1.0);
    assert_eq!(r["unfinished"], 0.0);
    assert!(r["ingredient_coherence"].as_f64().unwrap() > 0.0, "{r}");
    fails(&["judge", "--reference", "--data", &data, "--val-fraction", "0"], &["--val-fraction"]);
}

#[test]
fn a_stream_steps_back_exactly() {
    // Snapshot a stream, let the batch move on, restore it: its logits and its next step must be
    // what they were, while the other stream is untouched.
    for cfg in [ModelConfig::Lstm as fn(RnnConfig) -> ModelConfig, ModelConfig::Gru] {
        let ck = model(cfg);
        let CharModel::Rnn(m) = &ck.model else { unreachable!("built as an RNN") };
        let dev = Device::Cpu;
        let steppers = [
            Stepper::new(&ck.model, 2, &dev).unwrap(),
            Stepper::Rnn { model: m, state: m.zero_state(2, &dev).unwrap(), device: dev.clone() },
        ];
        for mut s in steppers {
            assert!(s.can_rewind());
            let mut logits = Vec::new();
            for t in [[0u32, 3], [5, 2]] {
                s.step(&t, &mut logits).unwrap();
            }
            let snap = s.snapshot(1, &logits).unwrap();
            let before = logits.clone();
            let mut ahead = logits.clone();
            s.step(&[7, 4], &mut ahead).unwrap();
            s.step(&[1, 6], &mut logits).unwrap();
            let other = logits[..logits.len() / 2].to_vec();
            s.restore(1, &snap, &mut logits).unwrap();
            let v = logits.len() / 2;
            assert_eq!(logits[v..], before[v..], "restored logits");
            assert_eq!(logits[..v], other[..], "the other stream is untouched");
            s.step(&[2, 4], &mut logits).unwrap();
            for (x, y) in logits[v..].iter().zip(&ahead[v..]) {
                assert!((x - y).abs() <= 1e-5, "{} after restore: {x} vs {y}", ck.config.arch());
            }
        }
    }
}

#[test]
fn the_shipped_model_does_not_repeat_ingredient_lines() {
    // Low temperature makes the shipped model list the same line again; the line guard rewinds it.
    let ingredients_repeat = |extra: &[&str]| -> usize {
        let mut args = vec!["sample", "-n", "6", "--seed", "5", "--temperature", "0.3", "--max-chars", "700", "--format", "json"];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        v.as_object()
            .unwrap()
            .values()
            .filter(|r| {
                let text = r["text"].as_str().map(str::to_string);
                let lines: Vec<String> = match r["ingredients"].as_array() {
                    Some(a) if !a.is_empty() => a.iter().map(|x| x.as_str().unwrap().to_lowercase()).collect(),
                    // unparsed (e.g. cut off): take its "- " lines
                    _ => text.unwrap_or_default().lines().filter_map(|l| l.strip_prefix("- ")).map(str::to_lowercase).collect(),
                };
                let mut seen = std::collections::HashSet::new();
                !lines.iter().all(|l| seen.insert(l.split_whitespace().collect::<Vec<_>>().join(" ")))
            })
            .count()
    };
    assert!(ingredients_repeat(&["--allow-repeats"]) > 0, "the check needs a setting where the model repeats");
    assert_eq!(ingredients_repeat(&[]), 0);
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gen"))
        .args(["sample", "-n", "3", "--seed", "1", "--max-chars", "400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then closes the pipe
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(first.starts_with("Title: "), "{first}");
    assert!(status.success(), "exit {status}: {err}");
    assert!(!err.contains("error"), "{err}");
}
