//! Character language models behind one interface: the recurrent LM and the transformer.
//! Training, evaluation and sampling only see `CharModel` and `ModelConfig`.

pub mod rnn_lm;
pub mod transformer;

use crate::nn::recurrent::{Cell, State};
use crate::rng::Rng;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use rnn_lm::{RnnConfig, RnnLm};
use transformer::{Transformer, TransformerConfig};
use serde::{Deserialize, Serialize};

/// The architecture and its sizes, as stored in a checkpoint's `config.json` (`"arch": "lstm"`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum ModelConfig {
    Lstm(RnnConfig),
    Gru(RnnConfig),
    Rnn(RnnConfig),
    Transformer(TransformerConfig),
}

impl ModelConfig {
    pub fn arch(&self) -> &'static str {
        match self {
            ModelConfig::Lstm(_) => "lstm",
            ModelConfig::Gru(_) => "gru",
            ModelConfig::Rnn(_) => "rnn",
            ModelConfig::Transformer(_) => "transformer",
        }
    }

    pub fn vocab(&self) -> usize {
        match self {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) | ModelConfig::Rnn(c) => c.vocab,
            ModelConfig::Transformer(c) => c.vocab,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        match self {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) | ModelConfig::Rnn(c) => c.validate(),
            ModelConfig::Transformer(c) => c.validate(),
        }
    }

    /// A one-line description for logs and model cards.
    pub fn describe(&self) -> String {
        match self {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) | ModelConfig::Rnn(c) => format!(
                "{} embed {} hidden {} layers {} dropout {} vocab {}",
                self.arch(),
                c.embed,
                c.hidden,
                c.layers,
                c.dropout,
                c.vocab
            ),
            ModelConfig::Transformer(c) => format!(
                "transformer dim {} layers {} heads {} context {} dropout {} vocab {}",
                c.dim, c.layers, c.heads, c.context, c.dropout, c.vocab
            ),
        }
    }

    /// The longest window the model can take in one forward pass (`None`: any).
    pub fn context(&self) -> Option<usize> {
        match self {
            ModelConfig::Transformer(c) => Some(c.context),
            _ => None,
        }
    }
}

/// What a model carries from one training window to the next (truncated BPTT for the RNNs).
#[derive(Clone, Debug)]
pub enum Carry {
    Rnn(Vec<State>),
    Stateless,
}

impl Carry {
    pub fn detach(&self) -> Carry {
        match self {
            Carry::Rnn(s) => Carry::Rnn(s.iter().map(State::detach).collect()),
            Carry::Stateless => Carry::Stateless,
        }
    }

    /// The carried tensors by name, for exact resume (`state.safetensors`).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        if let Carry::Rnn(states) = self {
            for (k, s) in states.iter().enumerate() {
                out.push((format!("h.{k}"), s.h.clone()));
                if let Some(c) = &s.c {
                    out.push((format!("c.{k}"), c.clone()));
                }
            }
        }
        out
    }
}

pub enum CharModel {
    Rnn(RnnLm),
    Transformer(Transformer),
}

impl CharModel {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg {
            ModelConfig::Lstm(c) => CharModel::Rnn(RnnLm::new(Cell::Lstm, c, vb)?),
            ModelConfig::Gru(c) => CharModel::Rnn(RnnLm::new(Cell::Gru, c, vb)?),
            ModelConfig::Rnn(c) => CharModel::Rnn(RnnLm::new(Cell::Rnn, c, vb)?),
            ModelConfig::Transformer(c) => CharModel::Transformer(Transformer::new(c, vb)?),
        })
    }

    pub fn initial_carry(&self, batch: usize, device: &Device) -> Result<Carry> {
        match self {
            CharModel::Rnn(m) => Ok(Carry::Rnn(m.zero_state(batch, device)?)),
            CharModel::Transformer(_) => Ok(Carry::Stateless),
        }
    }

    /// Restores a carry saved by `Carry::tensors`.
    pub fn carry_from(&self, batch: usize, device: &Device, saved: &std::collections::HashMap<String, Tensor>) -> anyhow::Result<Carry> {
        let mut carry = self.initial_carry(batch, device)?;
        if let Carry::Rnn(states) = &mut carry {
            for (k, s) in states.iter_mut().enumerate() {
                let get = |name: String, like: &Tensor| -> anyhow::Result<Tensor> {
                    let t = saved.get(&name).ok_or_else(|| anyhow::anyhow!("saved state has no {name}"))?;
                    if t.dims() != like.dims() {
                        anyhow::bail!("saved state {name} has shape {:?}, expected {:?} (different --batch?)", t.dims(), like.dims());
                    }
                    Ok(t.to_device(device)?)
                };
                s.h = get(format!("h.{k}"), &s.h)?;
                if let Some(c) = &s.c {
                    s.c = Some(get(format!("c.{k}"), c)?);
                }
            }
        }
        Ok(carry)
    }

    /// One window `[B, T]` → logits `[B, T, V]`, continuing from `carry`; returns the next carry.
    pub fn forward_window(&self, tokens: &Tensor, carry: &Carry, dropout_rng: Option<&mut Rng>) -> Result<(Tensor, Carry)> {
        match (self, carry) {
            (CharModel::Rnn(m), Carry::Rnn(states)) => {
                let (logits, next) = m.forward(tokens, states, dropout_rng)?;
                Ok((logits, Carry::Rnn(next)))
            }
            (CharModel::Transformer(m), Carry::Stateless) => Ok((m.forward(tokens, dropout_rng)?, Carry::Stateless)),
            _ => candle_core::bail!("carry does not belong to this model"),
        }
    }
}
