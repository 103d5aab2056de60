//! The bpc definition: batching, padding and the carried-state windows of `gen::eval::score` give the
//! same number as scoring each recipe alone in one pass.

mod common;
use candle_core::{Device, Tensor, D};
use gen::checkpoint::Checkpoint;
use gen::corpus::{read, Format};
use gen::eval::score;
use gen::model::rnn_lm::RnnConfig;
use gen::model::ModelConfig;
use gen::tokenizer::{CharTokenizer, EOR_ID};

#[test]
fn batched_windowed_scoring_equals_one_pass_per_recipe() {
    let docs = read(std::path::Path::new(&common::fixture("recipes_small.json")), Format::Auto).unwrap().docs;
    let tok = CharTokenizer::build(docs.iter().map(|d| d.text.as_str()), 1).unwrap();
    let ids: Vec<Vec<u32>> = docs.iter().take(40).map(|d| tok.encode(&d.text)).collect();
    assert!(ids.iter().any(|d| d.len() > 300), "need recipes longer than the 256-token eval window");
    let cfg = ModelConfig::Gru(RnnConfig { vocab: tok.vocab_size(), embed: 8, hidden: 16, layers: 2, dropout: 0.0 });
    let dev = Device::Cpu;
    let ck = Checkpoint::init(cfg, tok, &dev, 3).unwrap();
    let batched = score(&ck.model, &ids, &dev).unwrap();
    assert_eq!(batched.tokens, ids.iter().map(|d| d.len() as u64 + 1).sum::<u64>());

    let mut nll = 0f64;
    for d in &ids {
        let input: Vec<u32> = std::iter::once(EOR_ID).chain(d.iter().copied()).collect();
        let target: Vec<u32> = d.iter().copied().chain(std::iter::once(EOR_ID)).collect();
        let n = input.len();
        let x = Tensor::from_vec(input, (1, n), &dev).unwrap();
        let carry = ck.model.initial_carry(1, &dev).unwrap();
        let (logits, _) = ck.model.forward_window(&x, &carry, None).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap();
        let lp: Vec<Vec<f32>> = logp.to_vec2().unwrap();
        nll -= target.iter().enumerate().map(|(t, &y)| lp[t][y as usize] as f64).sum::<f64>();
    }
    let rel = (batched.nll_nats - nll).abs() / nll;
    assert!(rel < 1e-5, "batched {} vs one pass {nll}", batched.nll_nats);
}

#[test]
fn recurrent_models_read_each_recipe_from_the_zero_state() {
    // In a training window, a recipe after `<eor>` must be read exactly as eval and sampling read it:
    // from the zero state, whatever came before it in the stream.
    let text = "Title: Soup\nIngredients:\n- 1 egg\nInstructions:\nBoil it.\n";
    let dev = Device::Cpu;
    for cfg in [ModelConfig::Lstm as fn(RnnConfig) -> ModelConfig, ModelConfig::Gru, ModelConfig::Rnn] {
        let tok = CharTokenizer::build([text], 1).unwrap();
        let recipe: Vec<u32> = tok.encode("Title: Soup\n");
        let c = RnnConfig { vocab: tok.vocab_size(), embed: 8, hidden: 12, layers: 2, dropout: 0.0 };
        let ck = Checkpoint::init(cfg(c), tok, &dev, 5).unwrap();
        let alone: Vec<u32> = std::iter::once(EOR_ID).chain(recipe.iter().copied()).collect();
        let mut stream = ck.tokenizer.encode("Boil it.\n");
        let skip = stream.len();
        stream.extend(&alone);
        let run = |ids: &[u32]| -> Vec<Vec<f32>> {
            let x = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &dev).unwrap();
            let carry = ck.model.initial_carry(1, &dev).unwrap();
            ck.model.forward_window(&x, &carry, None).unwrap().0.squeeze(0).unwrap().to_vec2().unwrap()
        };
        let (a, s) = (run(&alone), run(&stream));
        for (t, (x, y)) in a.iter().zip(&s[skip..]).enumerate() {
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= 1e-5, "{}: position {t}: {p} vs {q}", ck.config.arch());
            }
        }
    }
}
