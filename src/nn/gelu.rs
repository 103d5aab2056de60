//! GELU, tanh approximation (GPT-2's, and candle's `Tensor::gelu`).
//!
//! candle's backward for `gelu` builds about a dozen element-wise tensors (two of them `powf`);
//! the fused CPU op does forward and backward in one vectorised pass each.

use crate::nn::cpu::{exp, f32_slice, output_buffer, simd_dispatch, with_f32};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 16 * 1024;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const C: f32 = 0.044_715;

/// The fused op for f32 on CPU, candle's `gelu` otherwise.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    match x.device() {
        Device::Cpu if x.dtype() == DType::F32 => gelu_fused(x),
        _ => x.gelu(),
    }
}

/// CPU, f32 only.
pub fn gelu_fused(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluOp)
}

/// `tanh(u)` from the vectorisable `exp`: `1 − 2 / (e^{2u} + 1)`.
#[inline(always)]
fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * u) + 1.0)
}

simd_dispatch! {
    fn forward(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + C * x * x * x)));
        }
    }
}

simd_dispatch! {
    fn backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let th = tanh(SQRT_2_OVER_PI * (x + C * x * x * x));
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * C * x * x);
            *dx = dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du);
        }
    }
}

/// `y = gelu(x)` in parallel.
pub(crate) fn forward_into(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| forward(x, y));
}

/// `dx = dy · gelu'(x)` in parallel.
pub(crate) fn backward_into(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| backward(x, dy, dx));
}

struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu")?;
        // SAFETY: `forward_into` writes every element.
        let mut y = unsafe { output_buffer(x.len()) };
        forward_into(x, &mut y);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        // SAFETY: `backward_into` writes every element.
        let mut dx = unsafe { output_buffer(x.elem_count()) };
        with_f32(x, "gelu", |x| with_f32(dy, "gelu", |dy| backward_into(x, dy, &mut dx)))??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    use crate::nn::cpu::rel_err;

    #[test]
    fn fused_matches_candle_gelu_in_values_and_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (70, 500), &dev).unwrap())).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (70, 500), &dev).unwrap();
        let run = |f: fn(&Tensor) -> Result<Tensor>| {
            let y = f(x.as_tensor()).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(x.as_tensor()).unwrap().clone())
        };
        let (yf, gf) = run(gelu_fused);
        let (yo, go) = run(|x| x.gelu());
        assert!(rel_err(&yf, &yo) <= 1e-4, "values: {}", rel_err(&yf, &yo));
        assert!(rel_err(&gf, &go) <= 1e-4, "gradient: {}", rel_err(&gf, &go));
    }
}
