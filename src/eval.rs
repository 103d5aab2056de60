//! Bits per character, the one definition every figure in gen uses:
//! each recipe is scored from the zero state with `<eor>` as the first input; the predicted tokens are
//! the recipe's characters and its closing `<eor>`; bpc = Σ −log2 p / number of predicted tokens.

use crate::model::CharModel;
use crate::tokenizer::EOR_ID;
use candle_core::{Device, Result, Tensor, D};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Score {
    /// Σ −ln p over predicted tokens.
    pub nll_nats: f64,
    pub tokens: u64,
    pub recipes: usize,
}

impl Score {
    pub fn bpc(&self) -> f64 {
        self.nll_nats / self.tokens.max(1) as f64 / std::f64::consts::LN_2
    }

    /// Adds the −ln p of `targets` under `logits` `[B, W, V]` at the positions where `mask` is 1.
    fn add(&mut self, logits: &Tensor, targets: Vec<u32>, mask: Vec<f32>) -> Result<()> {
        let (n, device) = (targets.len(), logits.device());
        let logp = candle_nn::ops::log_softmax(&logits.reshape((n, ()))?, D::Minus1)?;
        let picked = logp.gather(&Tensor::from_vec(targets, (n, 1), device)?, 1)?.squeeze(1)?;
        let counted: f32 = mask.iter().sum();
        let m = Tensor::from_vec(mask, n, device)?;
        self.nll_nats -= (picked * m)?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        self.tokens += counted as u64;
        Ok(())
    }
}

/// Recipes per forward batch and the window the state is carried across (bounded memory for long recipes).
const EVAL_BATCH: usize = 32;
const EVAL_WINDOW: usize = 256;

/// Scores `docs` (token ids without `<eor>`).
pub fn score(model: &CharModel, docs: &[Vec<u32>], device: &Device) -> Result<Score> {
    if let CharModel::Transformer(t) = model {
        return score_windows(model, docs, t.config().context, device);
    }
    // Similar lengths together, so little is spent on padding.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(docs[i].len()));
    let mut total = Score { recipes: docs.len(), ..Default::default() };
    for chunk in order.chunks(EVAL_BATCH) {
        let seqs: Vec<&Vec<u32>> = chunk.iter().map(|&i| &docs[i]).collect();
        let s = score_batch(model, &seqs, device)?;
        total.nll_nats += s.nll_nats;
        total.tokens += s.tokens;
    }
    Ok(total)
}

fn score_batch(model: &CharModel, docs: &[&Vec<u32>], device: &Device) -> Result<Score> {
    let b = docs.len();
    let max_len = docs.iter().map(|d| d.len() + 1).max().unwrap_or(0);
    // input_b = <eor> doc, target_b = doc <eor>
    let input = |d: &Vec<u32>, t: usize| if t == 0 { EOR_ID } else { d[t - 1] };
    let target = |d: &Vec<u32>, t: usize| if t < d.len() { d[t] } else { EOR_ID };
    let mut carry = model.initial_carry(b, device)?;
    let mut score = Score::default();
    let mut start = 0;
    while start < max_len {
        let w = EVAL_WINDOW.min(max_len - start);
        let mut inputs = Vec::with_capacity(b * w);
        let mut targets = Vec::with_capacity(b * w);
        let mut mask = Vec::with_capacity(b * w);
        for d in docs {
            for t in start..start + w {
                let live = t < d.len() + 1;
                inputs.push(if live { input(d, t) } else { EOR_ID });
                targets.push(if live { target(d, t) } else { EOR_ID });
                mask.push(if live { 1f32 } else { 0.0 });
            }
        }
        let x = Tensor::from_vec(inputs, (b, w), device)?;
        let (logits, next) = model.forward_window(&x, &carry, None)?;
        carry = next.detach();
        score.add(&logits, targets, mask)?;
        start += w;
    }
    Ok(score)
}

/// A slice of one recipe's input sequence scored in one forward pass of a fixed-context model.
struct Window {
    doc: usize,
    start: usize,
    len: usize,
    /// Positions before this (relative to `start`) were scored by an earlier window.
    score_from: usize,
}

/// Sliding windows for a model with a fixed context C: a recipe of up to C positions is one window;
/// a longer one is covered by windows of C positions with stride C/2, each scoring only the positions
/// the previous window did not, so every prediction after the first C sees at least C/2 characters.
fn windows(docs: &[Vec<u32>], context: usize) -> Vec<Window> {
    let stride = (context / 2).max(1);
    let mut out = Vec::new();
    for (doc, d) in docs.iter().enumerate() {
        let n = d.len() + 1;
        let mut start = 0;
        let mut scored = 0;
        loop {
            let start_now = start.min(n.saturating_sub(context));
            let len = context.min(n - start_now);
            out.push(Window { doc, start: start_now, len, score_from: scored - start_now });
            scored = start_now + len;
            if scored >= n {
                break;
            }
            start += stride;
        }
    }
    out
}

fn score_windows(model: &CharModel, docs: &[Vec<u32>], context: usize, device: &Device) -> Result<Score> {
    let input = |d: &Vec<u32>, t: usize| if t == 0 { EOR_ID } else { d[t - 1] };
    let target = |d: &Vec<u32>, t: usize| if t < d.len() { d[t] } else { EOR_ID };
    let mut all = windows(docs, context);
    all.sort_by_key(|w| std::cmp::Reverse(w.len));
    let mut score = Score { recipes: docs.len(), ..Default::default() };
    let carry = model.initial_carry(1, device)?;
    for batch in all.chunks(EVAL_BATCH) {
        let (b, w) = (batch.len(), batch[0].len);
        let mut inputs = Vec::with_capacity(b * w);
        let mut targets = Vec::with_capacity(b * w);
        let mut mask = Vec::with_capacity(b * w);
        for win in batch {
            let d = &docs[win.doc];
            for i in 0..w {
                let live = i < win.len;
                inputs.push(if live { input(d, win.start + i) } else { EOR_ID });
                targets.push(if live { target(d, win.start + i) } else { EOR_ID });
                mask.push(if live && i >= win.score_from { 1f32 } else { 0.0 });
            }
        }
        let x = Tensor::from_vec(inputs, (b, w), device)?;
        let (logits, _) = model.forward_window(&x, &carry, None)?;
        score.add(&logits, targets, mask)?;
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_position_once() {
        let docs = vec![vec![5u32; 3], vec![5u32; 20], vec![5u32; 7]];
        for context in [1, 2, 4, 8, 21, 30] {
            let mut hits = docs.iter().map(|d| vec![0; d.len() + 1]).collect::<Vec<_>>();
            for w in windows(&docs, context) {
                assert!(w.len <= context);
                for i in w.score_from..w.len {
                    hits[w.doc][w.start + i] += 1;
                }
            }
            assert!(hits.iter().flatten().all(|&h| h == 1), "context {context}: {hits:?}");
        }
    }
}
