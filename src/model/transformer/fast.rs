//! CPU decoding in plain f32 Rust: the weights copied out once per cache, keys and values kept in
//! `Vec`s, one matrix-vector product per linear layer.
//!
//! A batch-1 step is ~1 M multiply-adds spread over ~60 small ops; through candle, per-op overhead
//! (allocation, dispatch, graph bookkeeping) costs more than the arithmetic. The op-level path in
//! `cache` computes the same function and is the reference this one is tested against.

use super::{Block, Transformer, TransformerConfig};
use crate::nn::cpu::{dot, matmul, simd_dispatch, softmax_inline, sum};
use crate::nn::layer_norm::{LayerNorm, EPS};
use candle_core::{Result, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

struct Linear {
    /// `[out, in]` row-major, as in the model.
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct BlockWeights {
    ln1: Norm,
    qkv: Linear,
    proj: Linear,
    ln2: Norm,
    fc: Linear,
    fc_proj: Linear,
}

/// A snapshot of the model's parameters.
pub(super) struct Weights {
    cfg: TransformerConfig,
    embed: Vec<f32>,
    pos: Vec<f32>,
    blocks: Vec<BlockWeights>,
    ln_f: Norm,
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Weights {
    pub(super) fn snapshot(m: &Transformer) -> Result<Arc<Self>> {
        let norm = |n: &LayerNorm| -> Result<Norm> { Ok(Norm { w: flat(&n.weight)?, b: flat(&n.bias)? }) };
        let lin = |l: &super::Linear| -> Result<Linear> { Ok(Linear { w: flat(&l.weight)?, b: flat(&l.bias)? }) };
        let block = |b: &Block| -> Result<BlockWeights> {
            Ok(BlockWeights {
                ln1: norm(&b.ln1)?,
                qkv: lin(&b.qkv)?,
                proj: lin(&b.proj)?,
                ln2: norm(&b.ln2)?,
                fc: lin(&b.fc)?,
                fc_proj: lin(&b.fc_proj)?,
            })
        };
        Ok(Arc::new(Self {
            cfg: m.cfg.clone(),
            embed: flat(&m.embed)?,
            pos: flat(&m.pos)?,
            blocks: m.blocks.iter().map(block).collect::<Result<_>>()?,
            ln_f: norm(&m.ln_f)?,
        }))
    }
}

simd_dispatch! {
    /// `y = W·x + b` for one row.
    fn matvec(w: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) {
        for ((row, yo), bo) in w.chunks_exact(x.len()).zip(y.iter_mut()).zip(b) {
            *yo = dot(row, x) + bo;
        }
    }
}

simd_dispatch! {
    fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
        let d = w.len();
        for (x, y) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let n = d as f32;
            let mean = sum(x) / n;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).fold(0.0, |a, b| a + b) / n;
            let rstd = 1.0 / (var + EPS as f32).sqrt();
            for i in 0..d {
                y[i] = (x[i] - mean) * rstd * w[i] + b[i];
            }
        }
    }
}

simd_dispatch! {
    /// GELU, tanh approximation (as candle's `gelu`).
    fn gelu(x: &mut [f32]) {
        for v in x.iter_mut() {
            let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            // tanh(u) = 1 − 2 / (exp(2u) + 1)
            let th = 1.0 - 2.0 / (crate::nn::cpu::exp(2.0 * u) + 1.0);
            *v = 0.5 * *v * (1.0 + th);
        }
    }
}

simd_dispatch! {
    /// One head of one query over `seen` cached positions: `keys`, `vals` are `[seen][hd]`.
    fn attend_head(q: &[f32], keys: &[f32], vals: &[f32], scores: &mut [f32], out: &mut [f32], scale: f32) {
        let hd = q.len();
        for (sj, kj) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
            *sj = dot(q, kj) * scale;
        }
        softmax_inline(scores);
        out.fill(0.0);
        for (&p, vj) in scores.iter().zip(vals.chunks_exact(hd)) {
            for (o, v) in out.iter_mut().zip(vj) {
                *o += p * v;
            }
        }
    }
}

/// `y[n×out] = x[n×in] · Wᵀ + b`.
fn linear(l: &Linear, x: &[f32], n: usize, y: &mut [f32]) {
    let (inp, out) = (x.len() / n, l.b.len());
    if n == 1 {
        return matvec(&l.w, x, &l.b, y);
    }
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(&l.b);
    }
    // SAFETY: the views cover exactly `x` (n×in), `l.w` read transposed (in×out) and `y` (n×out).
    unsafe { matmul(n, out, inp, y.as_mut_ptr(), out, true, x.as_ptr(), inp, 1, l.w.as_ptr(), 1, inp, 1.0) }
}

/// One stream's cached keys and values: per layer `[H][context][hd]`, so each head's keys are contiguous.
struct StreamKv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

pub(super) struct FastCache {
    weights: Arc<Weights>,
    streams: Vec<StreamKv>,
}

impl FastCache {
    pub(super) fn new(weights: Arc<Weights>, batch: usize) -> Self {
        let c = &weights.cfg;
        let size = c.context * c.dim;
        let streams = (0..batch)
            .map(|_| StreamKv { k: vec![vec![0.0; size]; c.layers], v: vec![vec![0.0; size]; c.layers] })
            .collect();
        Self { weights, streams }
    }

    /// Appends `n` tokens per stream (`ids`: `[B][n]`) at positions `offset..offset + n` and returns the
    /// logits of each stream's last new token, `[B][vocab]` row-major.
    pub(super) fn extend(&mut self, ids: &[u32], n: usize, offset: usize) -> Vec<f32> {
        let w = &*self.weights;
        let vocab = w.cfg.vocab;
        let mut logits = vec![0f32; self.streams.len() * vocab];
        let run = |(s, out): (&mut StreamKv, &mut [f32]), ids: &[u32]| s.extend(w, ids, offset, out);
        if self.streams.len() == 1 {
            run((&mut self.streams[0], &mut logits), ids);
        } else {
            self.streams
                .par_iter_mut()
                .zip(logits.par_chunks_mut(vocab))
                .zip(ids.par_chunks(n))
                .for_each(|(pair, ids)| run(pair, ids));
        }
        logits
    }
}

impl StreamKv {
    fn extend(&mut self, w: &Weights, ids: &[u32], offset: usize, logits: &mut [f32]) {
        let c = &w.cfg;
        let (n, d, hd, ctx) = (ids.len(), c.dim, c.head_dim(), c.context);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut x = vec![0f32; n * d];
        for (i, (row, &id)) in x.chunks_exact_mut(d).zip(ids).enumerate() {
            let (e, p) = (&w.embed[id as usize * d..][..d], &w.pos[(offset + i) * d..][..d]);
            row.iter_mut().zip(e.iter().zip(p)).for_each(|(r, (a, b))| *r = a + b);
        }
        let (mut h, mut att, mut y) = (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; n * d]);
        let (mut qkv, mut hidden) = (vec![0f32; n * 3 * d], vec![0f32; n * 4 * d]);
        let mut scores = vec![0f32; offset + n];
        for (layer, b) in w.blocks.iter().enumerate() {
            layer_norm_rows(&x, &b.ln1.w, &b.ln1.b, &mut h);
            linear(&b.qkv, &h, n, &mut qkv);
            let (kc, vc) = (&mut self.k[layer], &mut self.v[layer]);
            for (i, row) in qkv.chunks_exact(3 * d).enumerate() {
                for head in 0..c.heads {
                    let at = head * ctx * hd + (offset + i) * hd;
                    kc[at..at + hd].copy_from_slice(&row[d + head * hd..][..hd]);
                    vc[at..at + hd].copy_from_slice(&row[2 * d + head * hd..][..hd]);
                }
            }
            for (i, (row, out)) in qkv.chunks_exact(3 * d).zip(att.chunks_exact_mut(d)).enumerate() {
                let seen = offset + i + 1;
                for head in 0..c.heads {
                    let q = &row[head * hd..][..hd];
                    let (keys, vals) = (&kc[head * ctx * hd..][..seen * hd], &vc[head * ctx * hd..][..seen * hd]);
                    attend_head(q, keys, vals, &mut scores[..seen], &mut out[head * hd..][..hd], scale);
                }
            }
            linear(&b.proj, &att, n, &mut y);
            x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
            layer_norm_rows(&x, &b.ln2.w, &b.ln2.b, &mut h);
            linear(&b.fc, &h, n, &mut hidden);
            gelu(&mut hidden);
            linear(&b.fc_proj, &hidden, n, &mut y);
            x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
        let last = &x[(n - 1) * d..];
        layer_norm_rows(last, &w.ln_f.w, &w.ln_f.b, &mut h[..d]);
        let zero = vec![0f32; c.vocab];
        matvec(&w.embed, &h[..d], &zero, logits);
    }
}
