//! A plain-Rust recurrent LM for generation on CPU: the same function as `RnnLm`, one step at a time,
//! without candle's per-op overhead. Layer 0's input projection is folded into a per-character table
//! (`W_ih · embed[c] + b`), so a step costs only the recurrent and head products. Their weights are
//! kept in f16 (`HalfMatrix`): a batch-1 step is bound by streaming them from memory, and rounding
//! weights to f16 changes the shipped model's validation bpc by about 1e-6 (see README).

use super::helper::Helper;
use super::matvec::{matvec_add, sigmoid, HalfMatrix};
use crate::model::rnn_lm::RnnLm;
use crate::nn::recurrent::Cell;
use candle_core::{Result, Tensor};

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

struct Layer {
    /// `None` for layer 0, whose input projection is the table.
    w_ih: Option<HalfMatrix>,
    w_hh: HalfMatrix,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
}

pub struct FastRnn {
    cell: Cell,
    hidden: usize,
    vocab: usize,
    /// `[V, G·H]`: layer 0's input projection of each character, with `b_ih` added.
    table: Vec<f32>,
    layers: Vec<Layer>,
    head_w: HalfMatrix,
    head_b: Vec<f32>,
    /// Takes half the rows of every product at batch 1.
    helper: Option<Helper>,
}

/// Per-stream hidden state: `h[layer]` and `c[layer]` are `[B·H]`.
pub struct FastState {
    pub h: Vec<Vec<f32>>,
    pub c: Vec<Vec<f32>>,
    batch: usize,
    gi: Vec<f32>,
    gh: Vec<f32>,
}

impl FastState {
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Stream `i`'s rows of every layer's h and c.
    pub fn rows(&self, i: usize) -> Vec<Vec<f32>> {
        let n = self.h[0].len() / self.batch;
        self.h.iter().chain(&self.c).map(|v| v[i * n..(i + 1) * n].to_vec()).collect()
    }

    /// Puts back what `rows(i)` returned.
    pub fn set_rows(&mut self, i: usize, rows: &[Vec<f32>]) {
        let n = self.h[0].len() / self.batch;
        for (v, r) in self.h.iter_mut().chain(self.c.iter_mut()).zip(rows) {
            v[i * n..(i + 1) * n].copy_from_slice(r);
        }
    }
}

impl FastRnn {
    pub fn new(m: &RnnLm) -> Result<Self> {
        let (vocab, e, hs) = (m.cfg.vocab, m.cfg.embed, m.cfg.hidden);
        let g = m.cell.gates() * hs;
        let half = |t: &Tensor, rows: usize, cols: usize| Ok::<_, candle_core::Error>(HalfMatrix::from_f32(&to_vec(t)?, rows, cols));
        let layers: Vec<Layer> = m
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| {
                Ok(Layer {
                    w_ih: if k == 0 { None } else { Some(half(&l.w_ih, g, l.input_size)?) },
                    w_hh: half(&l.w_hh, g, hs)?,
                    b_ih: to_vec(&l.b_ih)?,
                    b_hh: to_vec(&l.b_hh)?,
                })
            })
            .collect::<Result<_>>()?;
        let emb = to_vec(m.embed.embeddings())?;
        let mut table = vec![0f32; vocab * g];
        matvec_add(&to_vec(&m.layers[0].w_ih)?, g, e, &emb, None, &mut table);
        for row in table.chunks_exact_mut(g) {
            for (t, b) in row.iter_mut().zip(&layers[0].b_ih) {
                *t += b;
            }
        }
        Ok(Self {
            cell: m.cell,
            hidden: hs,
            vocab,
            table,
            layers,
            head_w: half(m.head.weight(), vocab, hs)?,
            head_b: m.head.bias().map(to_vec).transpose()?.unwrap_or_else(|| vec![0.0; vocab]),
            helper: Helper::spawn(),
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn zero_state(&self, batch: usize) -> FastState {
        let n = batch * self.hidden;
        let g = self.cell.gates() * self.hidden;
        FastState {
            h: vec![vec![0.0; n]; self.layers.len()],
            c: vec![vec![0.0; n]; self.layers.len()],
            batch,
            gi: vec![0.0; batch * g],
            gh: vec![0.0; batch * g],
        }
    }

    /// Feeds one token per stream and writes the next-token logits `[B·V]`.
    pub fn step(&self, tokens: &[u32], s: &mut FastState, logits: &mut [f32]) {
        let (hs, b) = (self.hidden, s.batch);
        let g = self.cell.gates() * hs;
        for (k, layer) in self.layers.iter().enumerate() {
            match &layer.w_ih {
                None => {
                    for (bi, &t) in tokens.iter().enumerate() {
                        s.gi[bi * g..(bi + 1) * g].copy_from_slice(&self.table[t as usize * g..(t as usize + 1) * g]);
                    }
                }
                Some(w_ih) => w_ih.matvec_add(&s.h[k - 1], Some(&layer.b_ih), &mut s.gi, self.helper.as_ref()),
            }
            layer.w_hh.matvec_add(&s.h[k], Some(&layer.b_hh), &mut s.gh, self.helper.as_ref());
            let (h, c) = (&mut s.h[k], &mut s.c[k]);
            for bi in 0..b {
                let gi = &s.gi[bi * g..(bi + 1) * g];
                let gh = &s.gh[bi * g..(bi + 1) * g];
                let h = &mut h[bi * hs..(bi + 1) * hs];
                let c = &mut c[bi * hs..(bi + 1) * hs];
                for j in 0..hs {
                    match self.cell {
                        Cell::Lstm => {
                            let i = sigmoid(gi[j] + gh[j]);
                            let f = sigmoid(gi[hs + j] + gh[hs + j]);
                            let gg = (gi[2 * hs + j] + gh[2 * hs + j]).tanh();
                            let o = sigmoid(gi[3 * hs + j] + gh[3 * hs + j]);
                            c[j] = f * c[j] + i * gg;
                            h[j] = o * c[j].tanh();
                        }
                        Cell::Gru => {
                            let r = sigmoid(gi[j] + gh[j]);
                            let z = sigmoid(gi[hs + j] + gh[hs + j]);
                            let n = (gi[2 * hs + j] + r * gh[2 * hs + j]).tanh();
                            h[j] = n + z * (h[j] - n);
                        }
                        Cell::Rnn => h[j] = (gi[j] + gh[j]).tanh(),
                    }
                }
            }
        }
        let last = self.layers.len() - 1;
        self.head_w.matvec_add(&s.h[last], Some(&self.head_b), logits, self.helper.as_ref());
    }
}
