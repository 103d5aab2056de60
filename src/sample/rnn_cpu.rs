//! A plain-Rust recurrent LM for generation on CPU: the same function as `RnnLm`, one step at a time,
//! without candle's per-op overhead. Layer 0's input projection is folded into a per-character table
//! (`W_ih · embed[c] + b`), so a step costs only the recurrent and head products.

use super::matvec::{matvec_add, par_matvec_add, sigmoid};
use crate::model::rnn_lm::RnnLm;
use crate::nn::recurrent::Cell;
use candle_core::{Result, Tensor};

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

struct Layer {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    input: usize,
}

pub struct FastRnn {
    cell: Cell,
    hidden: usize,
    vocab: usize,
    /// `[V, G·H]`: layer 0's input projection of each character, with `b_ih` added.
    table: Vec<f32>,
    layers: Vec<Layer>,
    head_w: Vec<f32>,
    head_b: Vec<f32>,
}

/// Per-stream hidden state: `h[layer]` and `c[layer]` are `[B·H]`.
pub struct FastState {
    pub h: Vec<Vec<f32>>,
    pub c: Vec<Vec<f32>>,
    batch: usize,
    gi: Vec<f32>,
    gh: Vec<f32>,
}

impl FastRnn {
    pub fn new(m: &RnnLm) -> Result<Self> {
        let layers: Vec<Layer> = m
            .layers
            .iter()
            .map(|l| {
                Ok(Layer {
                    w_ih: to_vec(&l.w_ih)?,
                    w_hh: to_vec(&l.w_hh)?,
                    b_ih: to_vec(&l.b_ih)?,
                    b_hh: to_vec(&l.b_hh)?,
                    input: l.input_size,
                })
            })
            .collect::<Result<_>>()?;
        let emb = to_vec(m.embed.embeddings())?;
        let (vocab, e) = (m.cfg.vocab, m.cfg.embed);
        let g = m.cell.gates() * m.cfg.hidden;
        let mut table = vec![0f32; vocab * g];
        matvec_add(&layers[0].w_ih, g, e, &emb, None, &mut table);
        for row in table.chunks_exact_mut(g) {
            for (t, b) in row.iter_mut().zip(&layers[0].b_ih) {
                *t += b;
            }
        }
        Ok(Self {
            cell: m.cell,
            hidden: m.cfg.hidden,
            vocab,
            table,
            layers,
            head_w: to_vec(m.head.weight())?,
            head_b: m.head.bias().map(to_vec).transpose()?.unwrap_or_else(|| vec![0.0; vocab]),
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
            if k == 0 {
                for (bi, &t) in tokens.iter().enumerate() {
                    s.gi[bi * g..(bi + 1) * g].copy_from_slice(&self.table[t as usize * g..(t as usize + 1) * g]);
                }
            } else {
                let (below, _) = s.h.split_at(k);
                par_matvec_add(&layer.w_ih, g, layer.input, &below[k - 1], Some(&layer.b_ih), &mut s.gi);
            }
            par_matvec_add(&layer.w_hh, g, hs, &s.h[k], Some(&layer.b_hh), &mut s.gh);
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
        par_matvec_add(&self.head_w, self.vocab, hs, &s.h[last], Some(&self.head_b), logits);
    }
}
