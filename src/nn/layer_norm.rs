//! Layer normalisation over the last dimension with a learned scale and shift (PyTorch `nn.LayerNorm`).
//!
//! `candle_nn::LayerNorm::forward` dispatches contiguous inputs to `candle_nn::ops::layer_norm`, a kernel
//! with no backward, so training through it silently stops gradients. This module computes the same
//! function from differentiable ops (`forward_ops`, every device) and, on CPU, from a fused kernel with a
//! hand-written backward (`forward_fused`); a test checks both agree on values and gradients.

pub(crate) mod fused;

use candle_core::{DType, Device, Result, Tensor, D};
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

    /// Normalises `x: [.., D]`: the fused kernel for f32 on CPU, the op-level composition otherwise.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match x.device() {
            Device::Cpu if x.dtype() == DType::F32 => self.forward_fused(x),
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

    /// One pass forward and one pass backward on CPU, f32 only (see `fused`).
    pub fn forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op3(&self.weight, &self.bias, fused::LayerNormOp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    use crate::nn::cpu::rel_err;

    #[test]
    fn fused_matches_ops_in_values_and_gradients() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 40, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 40, &dev).unwrap()).unwrap();
        let ln = LayerNorm { weight: w.as_tensor().clone(), bias: b.as_tensor().clone() };
        // 150 rows: several parallel chunks, the last one ragged; an offset mean and a large scale.
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (3, 50, 40), &dev).unwrap() + 2.0).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 50, 40), &dev).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
            let y = f(x.as_tensor()).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let grads = [&x, &w, &b].map(|v| g.get(v.as_tensor()).unwrap().clone());
            (y, grads)
        };
        let (yf, gf) = run(&|x| ln.forward_fused(x));
        let (yo, go) = run(&|x| ln.forward_ops(x));
        assert!(rel_err(&yf, &yo) <= 1e-4, "values: {}", rel_err(&yf, &yo));
        for ((a, b), name) in gf.iter().zip(&go).zip(["x", "weight", "bias"]) {
            assert!(rel_err(a, b) <= 1e-4, "d{name}: {}", rel_err(a, b));
        }
    }
}
