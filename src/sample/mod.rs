//! Generation: feed `<eor>` and a prime, then sample one character per stream per step with
//! candle-transformers' `LogitsProcessor` (temperature, top-k, top-p), many streams as one batch.

pub mod matvec;
pub mod recipe_text;
pub mod rnn_cpu;

use crate::model::rnn_lm::RnnLm;
use crate::model::transformer::{KvCache, Transformer};
use crate::model::CharModel;
use crate::nn::recurrent::State;
use crate::tokenizer::{CharTokenizer, EOR_ID};
use anyhow::{bail, Result};
use candle_core::{Device, Module, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use rnn_cpu::{FastRnn, FastState};

#[derive(Clone, Debug)]
pub struct SampleSettings {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    /// Characters generated per stream, prime not included.
    pub max_chars: usize,
    /// End a stream at `<eor>` (benchmarks of random models keep going).
    pub stop_at_eor: bool,
}

impl SampleSettings {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature must be a finite number > 0, got {}", self.temperature);
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("--top-p must be in (0, 1], got {p}");
            }
        }
        if self.top_k == Some(0) {
            bail!("--top-k must be at least 1");
        }
        if self.max_chars == 0 {
            bail!("--max-chars must be at least 1");
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        let temperature = self.temperature;
        match (self.top_k, self.top_p) {
            (None, None) => Sampling::All { temperature },
            (Some(k), None) => Sampling::TopK { k, temperature },
            (None, Some(p)) => Sampling::TopP { p, temperature },
            (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        }
    }
}

/// One generated text; `finished` when the model closed it with `<eor>`.
#[derive(Clone, Debug)]
pub struct Generated {
    pub text: String,
    pub finished: bool,
    /// Tokens sampled for this stream (the prime not included).
    pub tokens: usize,
}

/// Runs a model one token per stream per call, returning logits `[B·V]`.
pub enum Stepper<'a> {
    /// Plain-Rust RNN on CPU (no per-op overhead).
    FastRnn(FastRnn, FastState),
    /// candle ops, any device.
    Rnn { model: &'a RnnLm, state: Vec<State>, device: Device },
    /// KV-cached transformer: one new position per step (plain f32 on CPU, candle elsewhere).
    Transformer { model: &'a Transformer, cache: KvCache, device: Device },
}

impl<'a> Stepper<'a> {
    pub fn new(model: &'a CharModel, batch: usize, device: &Device) -> Result<Self> {
        match model {
            CharModel::Rnn(m) if device.is_cpu() => {
                let fast = FastRnn::new(m)?;
                let state = fast.zero_state(batch);
                Ok(Stepper::FastRnn(fast, state))
            }
            CharModel::Rnn(m) => Ok(Stepper::Rnn { model: m, state: m.zero_state(batch, device)?, device: device.clone() }),
            CharModel::Transformer(m) => Ok(Stepper::Transformer { model: m, cache: m.new_cache(batch), device: device.clone() }),
        }
    }

    pub fn step(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<()> {
        match self {
            Stepper::FastRnn(m, s) => {
                logits.resize(tokens.len() * m.vocab(), 0.0);
                m.step(tokens, s, logits);
            }
            Stepper::Rnn { model, state, device } => {
                let mut x = model.embed.forward(&Tensor::new(tokens, device)?)?;
                for (layer, s) in model.layers.iter().zip(state.iter_mut()) {
                    *s = layer.step(&x, s)?;
                    x = s.h.clone();
                }
                *logits = model.head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            }
            Stepper::Transformer { model, cache, device } => {
                *logits = model.step(&Tensor::new(tokens, device)?, cache)?.flatten_all()?.to_vec1::<f32>()?;
            }
        }
        Ok(())
    }
}

/// Checks a prime against the vocabulary: an empty prime or an unknown character is an error.
pub fn encode_prime(tok: &CharTokenizer, prime: &str) -> Result<Vec<u32>> {
    if prime.is_empty() {
        bail!("the prime text is empty; give some text or leave --prime out");
    }
    let unknown = tok.unknown_chars(prime);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|c| format!("{c:?}")).collect();
        bail!("the prime uses characters the model has never seen: {}; rephrase without them", list.join(", "));
    }
    Ok(tok.encode(prime))
}

/// Generates `count` texts in one batch, starting each from `<eor>` + `prime`. `on_token(stream, s)`
/// sees every generated piece as it comes (for streaming output).
pub fn generate(
    model: &CharModel,
    tok: &CharTokenizer,
    prime: &[u32],
    count: usize,
    settings: &SampleSettings,
    device: &Device,
    on_token: &mut dyn FnMut(usize, &str),
) -> Result<Vec<Generated>> {
    settings.validate()?;
    let mut stepper = Stepper::new(model, count, device)?;
    // One processor per stream, seeded by (seed, stream): a stream's text does not depend on count.
    let mut procs: Vec<LogitsProcessor> =
        (0..count).map(|i| LogitsProcessor::from_sampling(settings.seed.wrapping_add(i as u64), settings.sampling())).collect();
    let vocab = tok.vocab_size();
    let mut logits = Vec::new();
    let mut out: Vec<Generated> = (0..count).map(|_| Generated { text: tok.decode(prime), finished: false, tokens: 0 }).collect();
    for (i, g) in out.iter().enumerate() {
        on_token(i, &g.text);
    }
    stepper.step(&vec![EOR_ID; count], &mut logits)?;
    for &t in prime {
        stepper.step(&vec![t; count], &mut logits)?;
    }
    let mut next = vec![EOR_ID; count];
    for _ in 0..settings.max_chars {
        for (i, g) in out.iter_mut().enumerate() {
            if g.finished {
                continue;
            }
            let row = Tensor::from_slice(&logits[i * vocab..(i + 1) * vocab], vocab, &Device::Cpu)?;
            let t = procs[i].sample(&row)?;
            next[i] = t;
            g.tokens += 1;
            if t == EOR_ID && settings.stop_at_eor {
                g.finished = true;
            } else {
                let piece = tok.decode(&[t]);
                on_token(i, &piece);
                g.text.push_str(&piece);
            }
        }
        if out.iter().all(|g| g.finished) {
            break;
        }
        stepper.step(&next, &mut logits)?;
    }
    Ok(out)
}
