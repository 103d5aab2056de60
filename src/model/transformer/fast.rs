//! CPU decoding in plain f32 Rust: the weights copied out once per cache, keys and values kept in
//! `Vec`s, one matrix-vector product per linear layer.
//!
//! A batch-1 step is ~1 M multiply-adds spread over ~60 small ops; through candle, per-op overhead
//! (allocation, dispatch, graph bookkeeping) costs more than the arithmetic. The op-level path in
//! `cache` computes the same function and is the reference this one is tested against.

use super::{Block, Transformer, TransformerConfig};
use crate::nn::cpu::{matmul, simd_dispatch, softmax_inline, sum};
use crate::nn::layer_norm::{LayerNorm, EPS};
use candle_core::{Result, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// A linear layer stored as column panels of `Wᵀ`: for each run of `TILE` outputs, an `[in, TILE]`
/// row-major block (the last one narrower), blocks back to back. A matrix-vector product then reads
/// memory strictly sequentially into register-resident accumulators, instead of one horizontally
/// reduced dot product per output; a batch of rows multiplies each panel with one GEMM.
struct Linear {
    panels: Vec<f32>,
    inputs: usize,
    b: Vec<f32>,
}

impl Linear {
    /// From a `[out, in]` weight and its bias.
    fn new(w: &Tensor, b: Vec<f32>) -> Result<Self> {
        let (out, inputs) = w.dims2()?;
        let wt = flat(&w.t()?.contiguous()?)?;
        let mut panels = Vec::with_capacity(out * inputs);
        for (start, width) in panels_of(out) {
            for i in 0..inputs {
                panels.extend_from_slice(&wt[i * out + start..][..width]);
            }
        }
        Ok(Self { panels, inputs, b })
    }

    /// `(start, width, panel)` for each panel.
    fn iter(&self) -> impl Iterator<Item = (usize, usize, &[f32])> {
        panels_of(self.b.len())
            .map(move |(start, width)| (start, width, &self.panels[start * self.inputs..][..width * self.inputs]))
    }
}

/// Outputs per register tile of `matvec` (8 AVX-512 registers: independent add chains).
const TILE: usize = 128;

fn panels_of(out: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..out).step_by(TILE).map(move |start| (start, TILE.min(out - start)))
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
    /// `embed.weightᵀ`, `[dim, vocab]`, for the tied head.
    head: Linear,
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
        let lin = |l: &super::Linear| -> Result<Linear> { Linear::new(&l.weight, flat(&l.bias)?) };
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
            head: Linear::new(&m.embed, vec![0.0; m.cfg.vocab])?,
            pos: flat(&m.pos)?,
            blocks: m.blocks.iter().map(block).collect::<Result<_>>()?,
            ln_f: norm(&m.ln_f)?,
        }))
    }
}

simd_dispatch! {
    /// `y = x·panel + b` for one row and one `[in, width]` panel (`y`, `b`: the panel's outputs).
    fn panel_matvec(panel: &[f32], x: &[f32], b: &[f32], y: &mut [f32]) {
        let mut acc = [0f32; TILE];
        if y.len() == TILE {
            for (w, &xi) in panel.chunks_exact(TILE).zip(x) {
                for l in 0..TILE {
                    acc[l] += xi * w[l];
                }
            }
        } else {
            let width = y.len();
            for (w, &xi) in panel.chunks_exact(width).zip(x) {
                for l in 0..width {
                    acc[l] += xi * w[l];
                }
            }
        }
        for ((y, a), b) in y.iter_mut().zip(acc).zip(b) {
            *y = a + b;
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
    /// One head of one query over the `seen = scores.len()` cached positions: `keys_t` is the head's
    /// transposed key cache `[hd][context]`, `vals` its values `[seen][hd]`.
    fn attend_head(q: &[f32], keys_t: &[f32], vals: &[f32], scores: &mut [f32], out: &mut [f32], scale: f32) {
        let (hd, seen) = (q.len(), scores.len());
        let ctx = keys_t.len() / hd;
        scores.fill(0.0);
        for (c, &qc) in q.iter().enumerate() {
            let qc = qc * scale;
            for (s, k) in scores.iter_mut().zip(&keys_t[c * ctx..c * ctx + seen]) {
                *s += qc * k;
            }
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
    let (inp, out) = (l.inputs, l.b.len());
    if n == 1 {
        for (start, width, panel) in l.iter() {
            panel_matvec(panel, x, &l.b[start..start + width], &mut y[start..start + width]);
        }
        return;
    }
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(&l.b);
    }
    for (start, width, panel) in l.iter() {
        // SAFETY: `x` is n×in, the panel in×width, and `y`'s columns start..start+width of n rows.
        unsafe {
            matmul(
                n,
                width,
                inp,
                y.as_mut_ptr().add(start),
                out,
                true,
                x.as_ptr(),
                inp,
                1,
                panel.as_ptr(),
                width,
                1,
                1.0,
            )
        }
    }
}

/// One stream's cached keys and values per layer: keys transposed, `[H][hd][context]`, so a query's
/// scores accumulate along positions; values `[H][context][hd]`.
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
                let pos = offset + i;
                for head in 0..c.heads {
                    let base = head * ctx * hd;
                    for (ch, &k) in row[d + head * hd..][..hd].iter().enumerate() {
                        kc[base + ch * ctx + pos] = k;
                    }
                    vc[base + pos * hd..][..hd].copy_from_slice(&row[2 * d + head * hd..][..hd]);
                }
            }
            for (i, (row, out)) in qkv.chunks_exact(3 * d).zip(att.chunks_exact_mut(d)).enumerate() {
                let seen = offset + i + 1;
                for head in 0..c.heads {
                    let q = &row[head * hd..][..hd];
                    let (keys_t, vals) = (&kc[head * ctx * hd..][..ctx * hd], &vc[head * ctx * hd..][..seen * hd]);
                    attend_head(q, keys_t, vals, &mut scores[..seen], &mut out[head * hd..][..hd], scale);
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
        linear(&w.head, &h[..d], 1, logits);
    }
}
