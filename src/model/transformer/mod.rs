//! A small decoder-only transformer over characters (`--arch transformer`), shaped like nanoGPT.
//!
//! Design choices:
//! - **Pre-norm** blocks: `x += attn(ln1(x)); x += mlp(ln2(x))`, then a final `ln_f`. LayerNorm with
//!   learned scale and shift, ε = 1e-5.
//! - **Learned absolute positions** (`pos.weight: [context, dim]`), added to the token embedding.
//! - **Tied head**: logits are `ln_f(x) · embed.weightᵀ`, no head bias (as nanoGPT / GPT-2).
//! - Causal multi-head self-attention from one packed `qkv` projection, scaled by 1/√head_dim, with an
//!   output projection; all linear layers have biases.
//! - MLP of **4× width** with **GELU (tanh approximation)**, as GPT-2.
//! - Dropout (training only) on the embedding sum and on both residual branches; not on the attention
//!   probabilities, which stay inside the fused kernel.
//! - Init as nanoGPT: N(0, 0.02) for embeddings and weights, N(0, 0.02/√(2·layers)) for the two
//!   residual output projections, zero biases, unit LayerNorm scales.
//!
//! Parameter names: `embed.weight`, `pos.weight`, `blocks.{i}.ln1.{weight,bias}`,
//! `blocks.{i}.attn.qkv.{weight,bias}`, `blocks.{i}.attn.proj.{weight,bias}`, `blocks.{i}.ln2.{weight,bias}`,
//! `blocks.{i}.mlp.fc.{weight,bias}`, `blocks.{i}.mlp.proj.{weight,bias}`, `ln_f.{weight,bias}`.
//! Linear weights are `[out, in]` as in PyTorch.
//!
//! Kernels (`Kernels`): on CPU each residual sub-block (`ln → qkv → causal attention → proj`, and
//! `ln → fc → GELU → proj`) is one custom op with a hand-written backward (`blocks`), built from the
//! tested slice kernels in `crate::nn`; on other devices (CUDA) the same function is composed from
//! plain candle ops, which is also the reference the fused path is tested against. Generation (`cache`)
//! feeds one token per step through a key/value cache — on CPU in plain f32 Rust (`fast`) — and slides
//! the window when the context is full.

mod blocks;
mod cache;
mod fast;

pub use cache::KvCache;

use crate::nn::attention::{attend, causal_attention_ops, merge_heads, split_heads};
use crate::nn::gelu::gelu_fused;
use crate::nn::layer_norm::LayerNorm;
use crate::nn::linear::{linear_fused, linear_ops};
use crate::rng::Rng;
use anyhow::ensure;
use blocks::{pack, AttentionBlock, MlpBlock};
use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransformerConfig {
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    /// The longest window the model sees (the number of learned positions).
    pub context: usize,
    /// Dropout probability in training, in [0, 1).
    pub dropout: f32,
}

impl TransformerConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.vocab > 0, "the transformer needs a non-empty vocabulary");
        ensure!(self.dim > 0, "--dim must be positive");
        ensure!(self.layers > 0, "--layers must be positive");
        ensure!(self.heads > 0, "--heads must be positive");
        ensure!(self.context > 0, "--context must be positive");
        ensure!(self.dim.is_multiple_of(self.heads), "--heads {} must divide --dim {}", self.heads, self.dim);
        ensure!((0.0..1.0).contains(&self.dropout), "--dropout must be in [0, 1), got {}", self.dropout);
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Number of trainable parameters (the head is tied to the embedding).
    pub fn parameters(&self) -> usize {
        let d = self.dim;
        let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
        self.vocab * d + self.context * d + self.layers * block + 2 * d
    }
}

/// Which implementation the model runs; both compute the same function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// Fused custom ops with hand-written backward, and plain-f32 KV-cache decoding (CPU, f32 only;
    /// the default there).
    Fused,
    /// Plain candle ops everywhere (every device; the default off the CPU).
    Ops,
}

impl Kernels {
    fn layer_norm(self, ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Fused => ln.forward_fused(x),
            Kernels::Ops => ln.forward_ops(x),
        }
    }

    fn linear(self, l: &Linear, x: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Fused => linear_fused(x, &l.weight, &l.bias),
            Kernels::Ops => linear_ops(x, &l.weight, &l.bias),
        }
    }

    fn gelu(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Fused => gelu_fused(x),
            Kernels::Ops => x.gelu(),
        }
    }
}

/// `x · Wᵀ + b` over rows of a 2-D input, `W: [out, in]`.
#[derive(Clone, Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(vb: VarBuilder, inputs: usize, outputs: usize, stdev: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints((outputs, inputs), "weight", Init::Randn { mean: 0.0, stdev })?,
            bias: vb.get_with_hints(outputs, "bias", Init::Const(0.0))?,
        })
    }
}

/// One layer's cached keys and values, each `[B, H, L, hd]` (op-level decoding).
type LayerKv = Option<(Tensor, Tensor)>;

#[derive(Clone, Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    fc_proj: Linear,
}

impl Block {
    fn new(vb: VarBuilder, cfg: &TransformerConfig) -> Result<Self> {
        let d = cfg.dim;
        let residual_std = 0.02 / (2.0 * cfg.layers as f64).sqrt();
        let (attn, mlp) = (vb.pp("attn"), vb.pp("mlp"));
        Ok(Self {
            ln1: LayerNorm::new(vb.pp("ln1"), d)?,
            qkv: Linear::new(attn.pp("qkv"), d, 3 * d, 0.02)?,
            proj: Linear::new(attn.pp("proj"), d, d, residual_std)?,
            ln2: LayerNorm::new(vb.pp("ln2"), d)?,
            fc: Linear::new(mlp.pp("fc"), d, 4 * d, 0.02)?,
            fc_proj: Linear::new(mlp.pp("proj"), 4 * d, d, residual_std)?,
        })
    }

    /// `x: [B·T, D]` rows of `b` sequences. With `kv`, the sequences continue the cached positions and
    /// the new keys and values are appended to the cache; without, they start at position 0.
    fn forward(
        &self,
        kernels: Kernels,
        x: &Tensor,
        b: usize,
        heads: usize,
        mut dropout: Option<&mut Dropout>,
        kv: Option<&mut LayerKv>,
    ) -> Result<Tensor> {
        if kernels == Kernels::Fused && kv.is_none() {
            return self.forward_fused(x, b, heads, dropout);
        }
        let (rows, d) = x.dims2()?;
        let t = rows / b;
        let qkv = kernels.linear(&self.qkv, &kernels.layer_norm(&self.ln1, x)?)?.reshape((b, t, 3 * d))?;
        let y = match kv {
            None => causal_attention_ops(&qkv, heads)?,
            Some(slot) => {
                let (q, k, v) = split_heads(&qkv, heads)?;
                let (k, v) = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                let y = attend(&q, &k, &v)?;
                *slot = Some((k, v));
                merge_heads(&y)?
            }
        };
        let x = (x + drop(&kernels.linear(&self.proj, &y.reshape((rows, d))?)?, dropout.as_deref_mut())?)?;
        let h = kernels.gelu(&kernels.linear(&self.fc, &kernels.layer_norm(&self.ln2, &x)?)?)?;
        x + drop(&kernels.linear(&self.fc_proj, &h)?, dropout)?
    }
}

impl Block {
    /// The training path on CPU: each residual sub-block as one custom op (see `blocks`).
    fn forward_fused(&self, x: &Tensor, b: usize, heads: usize, mut dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let (rows, d) = x.dims2()?;
        let attn = pack(&[
            &self.ln1.weight,
            &self.ln1.bias,
            &self.qkv.weight,
            &self.qkv.bias,
            &self.proj.weight,
            &self.proj.bias,
        ])?;
        let mask = residual_mask(x, dropout.as_deref_mut())?;
        let x = x.contiguous()?.apply_op3(&attn, &mask, AttentionBlock::new(b, rows / b, heads, d))?;
        let mlp = pack(&[
            &self.ln2.weight,
            &self.ln2.bias,
            &self.fc.weight,
            &self.fc.bias,
            &self.fc_proj.weight,
            &self.fc_proj.bias,
        ])?;
        let mask = residual_mask(&x, dropout)?;
        x.apply_op3(&mlp, &mask, MlpBlock::new(rows, d))
    }
}

/// Training-time dropout: the probability, and the RNG the masks come from — ours, not candle's, so a
/// resumed run draws the same masks.
pub struct Dropout<'a> {
    pub p: f32,
    pub rng: &'a mut Rng,
}

impl Dropout<'_> {
    /// Inverted-dropout mask shaped like `x`: entries 0 or 1/(1−p).
    fn mask(&mut self, x: &Tensor) -> Result<Tensor> {
        let keep = 1.0 - self.p as f64;
        let scale = (1.0 / keep) as f32;
        let m: Vec<f32> = (0..x.elem_count()).map(|_| if self.rng.uniform() < keep { scale } else { 0.0 }).collect();
        Tensor::from_vec(m, x.shape(), x.device())?.to_dtype(x.dtype())
    }
}

/// The mask for a fused sub-block, or a `[1]` placeholder when dropout is off.
fn residual_mask(x: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
    match dropout {
        Some(d) if d.p > 0.0 => d.mask(x),
        _ => Tensor::ones(1, x.dtype(), x.device()),
    }
}

fn drop(x: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
    match dropout {
        Some(d) if d.p > 0.0 => x * d.mask(x)?,
        _ => Ok(x.clone()),
    }
}

#[derive(Clone, Debug)]
pub struct Transformer {
    cfg: TransformerConfig,
    /// `[vocab, dim]`: token embedding and (tied) output head.
    embed: Tensor,
    /// `[context, dim]`
    pos: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    kernels: Kernels,
    /// Zeros `[vocab]`: the head has no bias, the fused linear op takes one.
    no_bias: Tensor,
}

impl Transformer {
    pub fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let emb = Init::Randn { mean: 0.0, stdev: 0.02 };
        Ok(Self {
            cfg: cfg.clone(),
            embed: vb.get_with_hints((cfg.vocab, cfg.dim), "embed.weight", emb)?,
            pos: vb.get_with_hints((cfg.context, cfg.dim), "pos.weight", emb)?,
            blocks: (0..cfg.layers).map(|i| Block::new(vb.pp(format!("blocks.{i}")), cfg)).collect::<Result<_>>()?,
            ln_f: LayerNorm::new(vb.pp("ln_f"), cfg.dim)?,
            // The fused kernels are f32-only; other dtypes take the op-level path.
            kernels: if vb.device().is_cpu() && vb.dtype() == DType::F32 { Kernels::Fused } else { Kernels::Ops },
            no_bias: Tensor::zeros(cfg.vocab, vb.dtype(), vb.device())?,
        })
    }

    /// Chooses the kernels (tests and benchmarks compare them); fused ones exist on CPU only.
    pub fn with_kernels(mut self, kernels: Kernels) -> Result<Self> {
        if kernels == Kernels::Fused && !(self.embed.device().is_cpu() && self.embed.dtype() == DType::F32) {
            candle_core::bail!("the fused transformer kernels run on CPU in f32 only");
        }
        self.kernels = kernels;
        Ok(self)
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// tokens `[B, T]` (u32, 1 ≤ T ≤ context) → logits `[B, T, vocab]`; `dropout_rng` enables dropout
    /// (training).
    pub fn forward(&self, tokens: &Tensor, dropout_rng: Option<&mut Rng>) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if t == 0 || t > self.cfg.context {
            candle_core::bail!("the transformer takes 1 to {} positions, got {t}", self.cfg.context);
        }
        if b == 0 {
            return Tensor::zeros((0, t, self.cfg.vocab), self.embed.dtype(), self.embed.device());
        }
        let mut dropout = dropout_rng.map(|rng| Dropout { p: self.cfg.dropout, rng });
        let mut x = drop(&self.embed_at(tokens, 0)?, dropout.as_mut())?;
        for block in &self.blocks {
            x = block.forward(self.kernels, &x, b, self.cfg.heads, dropout.as_mut(), None)?;
        }
        self.logits(&x)?.reshape((b, t, self.cfg.vocab))
    }

    /// Token plus position embeddings of `tokens: [B, n]` placed at positions `offset..offset + n`,
    /// as rows `[B·n, D]`.
    fn embed_at(&self, tokens: &Tensor, offset: usize) -> Result<Tensor> {
        let (b, n) = tokens.dims2()?;
        let d = self.cfg.dim;
        let x = self.embed.index_select(&tokens.flatten_all()?, 0)?.reshape((b, n, d))?;
        x.broadcast_add(&self.pos.narrow(0, offset, n)?)?.reshape((b * n, d))
    }

    /// Final norm and the tied head: rows `[N, D]` → `[N, vocab]`.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.kernels.layer_norm(&self.ln_f, x)?;
        match self.kernels {
            Kernels::Fused => linear_fused(&x, &self.embed, &self.no_bias),
            Kernels::Ops => x.matmul(&self.embed.t()?),
        }
    }
}
