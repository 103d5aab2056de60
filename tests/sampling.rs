//! Generation: the plain-Rust CPU stepper computes what the candle model computes; seeds fix output;
//! a stream's text does not depend on the batch; bad sampling options are refused.

mod common;
use candle_core::Device;
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
    let s = SampleSettings { temperature: 1.0, top_k: Some(20), top_p: Some(0.95), seed: 11, max_chars: 60, stop_at_eor: true };
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
