//! The recurrent character language model: embedding → stacked recurrent layers → linear head.
//! Names and layouts match PyTorch (`embed.weight`, `rnn.weight_ih_l{k}`…, `head.weight`), so
//! `scripts/torch_check.py` loads a checkpoint into `torch.nn.LSTM/GRU/RNN` unchanged.

use crate::nn::recurrent::{Backend, Cell, Recurrent, State, Steps};
use crate::tokenizer::EOR_ID;
use crate::rng::Rng;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
    /// Dropout on the outputs of every layer but the last (as `torch.nn.LSTM(dropout=…)`).
    pub dropout: f32,
}

impl RnnConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [("--embed", self.embed), ("--hidden", self.hidden), ("--layers", self.layers)] {
            if v == 0 {
                anyhow::bail!("{name} must be at least 1");
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            anyhow::bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        Ok(())
    }
}

pub struct RnnLm {
    pub cell: Cell,
    pub cfg: RnnConfig,
    pub embed: Embedding,
    pub layers: Vec<Recurrent>,
    pub head: Linear,
    pub backend: Backend,
}

impl RnnLm {
    pub fn new(cell: Cell, cfg: &RnnConfig, vb: VarBuilder) -> Result<Self> {
        let embed = candle_nn::embedding(cfg.vocab, cfg.embed, vb.pp("embed"))?;
        let layers = (0..cfg.layers)
            .map(|k| {
                let input = if k == 0 { cfg.embed } else { cfg.hidden };
                Recurrent::new(vb.pp("rnn"), cell, input, cfg.hidden, k)
            })
            .collect::<Result<_>>()?;
        let head = candle_nn::linear(cfg.hidden, cfg.vocab, vb.pp("head"))?;
        Ok(Self { cell, cfg: cfg.clone(), embed, layers, head, backend: Backend::Auto })
    }

    pub fn zero_state(&self, batch: usize, device: &candle_core::Device) -> Result<Vec<State>> {
        self.layers.iter().map(|l| l.zero_state(batch, device)).collect()
    }

    /// tokens `[B, T]` → logits `[B, T, V]` and the state after the last step of each layer.
    /// `dropout_rng` switches dropout on (training).
    ///
    /// Every layer restarts from the zero state where the input is `<eor>`: each recipe is read the
    /// way `eval` scores it and `sample` writes it, so nothing leaks from the previous recipe in the
    /// training stream and generation starts from a state the model was trained on.
    pub fn forward(&self, tokens: &Tensor, state: &[State], dropout_rng: Option<&mut Rng>) -> Result<(Tensor, Vec<State>)> {
        let (b, t) = tokens.dims2()?;
        let resets: Vec<bool> = tokens.flatten_all()?.to_vec1::<u32>()?.iter().map(|&id| id == EOR_ID).collect();
        let steps = Steps { lengths: None, resets: Some(&resets) };
        let mut x = self.embed.forward(tokens)?;
        let mut rng = dropout_rng;
        let mut out_state = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.iter().enumerate() {
            let (y, s) = layer.forward_with(self.backend, &x, Some(&state[k]), steps)?;
            out_state.push(s);
            x = match rng.as_deref_mut() {
                Some(r) if k + 1 < self.layers.len() && self.cfg.dropout > 0.0 => dropout(&y, self.cfg.dropout, r)?,
                _ => y,
            };
        }
        let logits = self.head.forward(&x.reshape((b * t, self.cfg.hidden))?)?;
        Ok((logits.reshape((b, t, self.cfg.vocab))?, out_state))
    }
}

/// Inverted dropout with a mask drawn from our own RNG, so a resumed run draws the same masks.
pub fn dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
    let keep = 1.0 - p as f64;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.uniform() < keep { scale } else { 0.0 }).collect();
    x * Tensor::from_vec(mask, x.shape(), x.device())?
}
