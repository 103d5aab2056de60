//! Generation: feed `<eor>` and a prime, then sample one character per stream per step with
//! candle-transformers' `LogitsProcessor` (temperature, top-k, top-p), many streams as one batch.

mod helper;
pub mod line_guard;
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
use line_guard::LineGuard;
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
    /// Re-sample an ingredient line the recipe already lists (`line_guard`; recurrent models only).
    pub no_repeat_ingredients: bool,
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
    /// Tokens sampled for this stream (the prime not included; rewound lines included).
    pub tokens: usize,
    /// Ingredient lines sampled again because the recipe already listed them.
    pub rewinds: u32,
}

/// One stream's model state and next-token logits, to step back to.
pub struct Snapshot {
    rows: Vec<Vec<f32>>,
    logits: Vec<f32>,
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

    /// Whether single streams can step back (`snapshot`/`restore`): the recurrent models, whose state
    /// is a few vectors; the transformer's KV cache advances all streams together.
    pub fn can_rewind(&self) -> bool {
        !matches!(self, Stepper::Transformer { .. })
    }

    /// Stream `i`'s state and its row of `logits`.
    pub fn snapshot(&self, i: usize, logits: &[f32]) -> Result<Snapshot> {
        let v = logits.len() / self.batch();
        let rows = match self {
            Stepper::FastRnn(_, s) => s.rows(i),
            Stepper::Rnn { state, .. } => {
                let mut rows = Vec::new();
                for s in state {
                    rows.push(s.h.get(i)?.to_vec1::<f32>()?);
                    if let Some(c) = &s.c {
                        rows.push(c.get(i)?.to_vec1::<f32>()?);
                    }
                }
                rows
            }
            Stepper::Transformer { .. } => bail!("the transformer's streams cannot step back"),
        };
        Ok(Snapshot { rows, logits: logits[i * v..(i + 1) * v].to_vec() })
    }

    /// Puts stream `i` back where `snapshot` found it.
    pub fn restore(&mut self, i: usize, snap: &Snapshot, logits: &mut [f32]) -> Result<()> {
        let v = snap.logits.len();
        logits[i * v..(i + 1) * v].copy_from_slice(&snap.logits);
        match self {
            Stepper::FastRnn(_, s) => s.set_rows(i, &snap.rows),
            Stepper::Rnn { state, device, .. } => {
                let mut rows = snap.rows.iter();
                for s in state.iter_mut() {
                    let put = |t: &Tensor, r: &Vec<f32>| -> Result<Tensor> {
                        let row = Tensor::from_slice(r, (1, r.len()), device)?;
                        Ok(t.slice_assign(&[i..i + 1, 0..r.len()], &row)?)
                    };
                    s.h = put(&s.h, rows.next().expect("snapshot has every layer"))?;
                    if let Some(c) = &s.c {
                        s.c = Some(put(c, rows.next().expect("snapshot has every layer"))?);
                    }
                }
            }
            Stepper::Transformer { .. } => bail!("the transformer's streams cannot step back"),
        }
        Ok(())
    }

    fn batch(&self) -> usize {
        match self {
            Stepper::FastRnn(_, s) => s.batch(),
            Stepper::Rnn { state, .. } => state[0].h.dim(0).unwrap_or(1),
            Stepper::Transformer { cache, .. } => cache.batch(),
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
/// sees every generated piece as it comes (for streaming output; with the line guard, whole lines).
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
    let prime_text = tok.decode(prime);
    let mut out: Vec<Generated> =
        (0..count).map(|_| Generated { text: prime_text.clone(), finished: false, tokens: 0, rewinds: 0 }).collect();
    // Per stream: the guard, the snapshot at the start of its current line, and how much of its text
    // `on_token` has seen.
    let guarded = settings.no_repeat_ingredients && stepper.can_rewind();
    let mut guards: Vec<Option<(LineGuard, Option<Snapshot>)>> =
        (0..count).map(|_| guarded.then(|| (LineGuard::new(&prime_text), None))).collect();
    let mut shown = vec![0usize; count];
    let mut show = |i: usize, text: &str, upto: usize, shown: &mut [usize]| {
        if upto > shown[i] {
            on_token(i, &text[shown[i]..upto]);
            shown[i] = upto;
        }
    };
    for (i, g) in out.iter().enumerate() {
        show(i, &g.text, g.text.len(), &mut shown);
    }
    stepper.step(&vec![EOR_ID; count], &mut logits)?;
    for &t in prime {
        stepper.step(&vec![t; count], &mut logits)?;
    }
    let mut next = vec![EOR_ID; count];
    let mut rewind = vec![false; count];
    for _ in 0..settings.max_chars {
        for (i, g) in out.iter_mut().enumerate() {
            if g.finished {
                continue;
            }
            if let Some((guard, snap @ None)) = &mut guards[i] {
                if guard.line_start == g.text.len() {
                    *snap = Some(stepper.snapshot(i, &logits)?);
                }
            }
            let row = Tensor::from_slice(&logits[i * vocab..(i + 1) * vocab], vocab, &Device::Cpu)?;
            let t = procs[i].sample(&row)?;
            next[i] = t;
            g.tokens += 1;
            if t == EOR_ID && settings.stop_at_eor {
                g.finished = true;
                show(i, &g.text, g.text.len(), &mut shown);
                continue;
            }
            let piece = tok.decode(&[t]);
            match &mut guards[i] {
                None => {
                    g.text.push_str(&piece);
                    show(i, &g.text, g.text.len(), &mut shown);
                }
                Some((guard, snap)) if piece == "\n" => {
                    if guard.rejects(&g.text[guard.line_start..]) {
                        g.text.truncate(guard.line_start);
                        rewind[i] = true;
                    } else {
                        g.text.push('\n');
                        guard.line_start = g.text.len();
                        *snap = None;
                        show(i, &g.text, g.text.len(), &mut shown);
                    }
                }
                Some(_) => g.text.push_str(&piece),
            }
        }
        if out.iter().all(|g| g.finished) {
            break;
        }
        stepper.step(&next, &mut logits)?;
        // A rewound stream took a step like the others; put it back at the start of its line.
        for (i, r) in rewind.iter_mut().enumerate().filter(|(_, r)| **r) {
            if let Some((_, Some(snap))) = &guards[i] {
                stepper.restore(i, snap, &mut logits)?;
            }
            *r = false;
        }
    }
    for (i, g) in out.iter_mut().enumerate() {
        show(i, &g.text, g.text.len(), &mut shown);
        g.rewinds = guards[i].as_ref().map_or(0, |(guard, _)| guard.rewinds);
    }
    Ok(out)
}
