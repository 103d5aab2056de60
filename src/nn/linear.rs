//! Affine layer `y = x · Wᵀ + b` over rows, `W: [out, in]` as in PyTorch.
//!
//! The op-level form (`linear_ops`) is a matmul against a transposed view plus a broadcast add; its
//! backward adds a transpose, a reduction and several gradient accumulations per layer. The fused CPU
//! op (`linear_fused`) computes `y`, and in backward `dx`, `dW` and `db`, each with one GEMM or one
//! pass, straight into contiguous buffers.

use crate::nn::cpu::{f32_slice, matmul_par, output_buffer, with_f32};
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x: [N, in]` → `[N, out]`: the fused op for f32 on CPU, the op-level composition otherwise.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    match x.device() {
        Device::Cpu if x.dtype() == DType::F32 => linear_fused(x, w, b),
        _ => linear_ops(x, w, b),
    }
}

pub fn linear_ops(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// CPU, f32, 2-D `x` only.
pub fn linear_fused(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)
}

/// `y[n×out] = x[n×in] · Wᵀ + b` with `W: [out, in]`.
pub(crate) fn forward_into(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let out = b.len();
    let inp = w.len() / out;
    let n = x.len() / inp;
    y.par_chunks_mut(out).for_each(|row| row.copy_from_slice(b));
    // SAFETY: x is n×in, w read transposed is in×out, y is n×out.
    unsafe { matmul_par(n, out, inp, y.as_mut_ptr(), out, true, x.as_ptr(), inp, 1, w.as_ptr(), 1, inp) };
}

/// Gradients of `forward_into` given `dy: [n, out]`: `dw`, `db` overwritten; `dx` overwritten or,
/// with `accumulate`, added to (skipped when `None`).
pub(crate) fn backward_into(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let out = db.len();
    let inp = w.len() / out;
    let n = x.len() / inp;
    // SAFETY: dy is n×out, w is out×in, x is n×in; dyᵀ is read with swapped strides.
    unsafe {
        if let Some((dx, accumulate)) = dx {
            matmul_par(n, inp, out, dx.as_mut_ptr(), inp, accumulate, dy.as_ptr(), out, 1, w.as_ptr(), inp, 1);
        }
        matmul_par(out, inp, n, dw.as_mut_ptr(), inp, false, dy.as_ptr(), 1, out, x.as_ptr(), inp, 1);
    }
    db.copy_from_slice(&column_sums(dy, out));
}

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, inp) = lx.shape().dims2()?;
        let (out, win) = lw.shape().dims2()?;
        if win != inp || lb.shape().elem_count() != out {
            candle_core::bail!("linear: input {:?} against weight {:?}", lx.shape(), lw.shape());
        }
        let (x, w, b) = (f32_slice(sx, lx, "linear")?, f32_slice(sw, lw, "linear")?, f32_slice(sb, lb, "linear")?);
        // SAFETY: `forward_into` fills every row with the bias before accumulating into it.
        let mut y = unsafe { output_buffer(n * out) };
        forward_into(x, w, b, &mut y);
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, inp) = x.dims2()?;
        let out = w.dim(0)?;
        // SAFETY: `backward_into` overwrites both.
        let (mut dx, mut dw) = unsafe { (output_buffer(n * inp), output_buffer(out * inp)) };
        let mut db = vec![0f32; out];
        with_f32(x, "linear", |x| {
            with_f32(w, "linear", |w| {
                with_f32(dy, "linear", |dy| backward_into(x, w, dy, Some((&mut dx, false)), &mut dw, &mut db))
            })
        })???;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (n, inp), dev)?),
            Some(Tensor::from_vec(dw, (out, inp), dev)?),
            Some(Tensor::from_vec(db, out, dev)?),
        ))
    }
}

/// Sums of the columns of a row-major `[N, width]` matrix.
fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    const ROWS: usize = 256;
    m.par_chunks(ROWS * width)
        .map(|chunk| {
            let mut acc = vec![0f32; width];
            for row in chunk.chunks_exact(width) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            acc
        })
        .reduce(
            || vec![0f32; width],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    use crate::nn::cpu::rel_err;

    #[test]
    fn fused_matches_ops_in_values_and_gradients() {
        let dev = Device::Cpu;
        let var = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap();
        let (x, w, b) = (var(&[300, 24]), var(&[40, 24]), var(&[40]));
        let probe = Tensor::randn(0f32, 1.0, (300, 40), &dev).unwrap();
        let run = |f: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>| {
            let y = f(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, [&x, &w, &b].map(|v| g.get(v.as_tensor()).unwrap().clone()))
        };
        let (yf, gf) = run(linear_fused);
        let (yo, go) = run(linear_ops);
        assert!(rel_err(&yf, &yo) <= 1e-4, "values: {}", rel_err(&yf, &yo));
        for ((a, b), name) in gf.iter().zip(&go).zip(["x", "weight", "bias"]) {
            assert!(rel_err(a, b) <= 1e-4, "d{name}: {}", rel_err(a, b));
        }
    }
}
