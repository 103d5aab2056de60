//! The fused LayerNorm kernel: one pass forward, one pass backward (CPU custom op over `x, weight, bias`).
//!
//! Per-row statistics are recomputed in backward (two passes over a row of D floats) rather than
//! stored: it costs less than the allocations and graph nodes the op-level composition needs.

use super::EPS;
use crate::nn::cpu::{dot, f32_slice, output_buffer, simd_dispatch, sum, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows per parallel job.
const ROWS: usize = 64;

pub struct LayerNormOp;

/// Mean and 1/σ of one row.
#[inline(always)]
fn stats(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).fold(0.0, |a, b| a + b) / n;
    (mean, 1.0 / (var + EPS as f32).sqrt())
}

simd_dispatch! {
    fn forward_rows(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
        let d = w.len();
        for (x, y) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let (mean, rstd) = stats(x);
            for i in 0..d {
                y[i] = (x[i] - mean) * rstd * w[i] + b[i];
            }
        }
    }
}

simd_dispatch! {
    /// `dx` (`=` or `+=`) for the rows, and this chunk's contributions added into `dw`, `db`.
    fn backward_rows(x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32], accumulate: bool, dw: &mut [f32], db: &mut [f32], xhat: &mut [f32], g: &mut [f32]) {
        let d = w.len();
        for ((x, dy), dx) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
            let (mean, rstd) = stats(x);
            for i in 0..d {
                xhat[i] = (x[i] - mean) * rstd;
                g[i] = dy[i] * w[i];
                dw[i] += dy[i] * xhat[i];
                db[i] += dy[i];
            }
            let n = d as f32;
            let (mg, mgx) = (sum(g) / n, dot(g, xhat) / n);
            if accumulate {
                for i in 0..d {
                    dx[i] += rstd * (g[i] - mg - xhat[i] * mgx);
                }
            } else {
                for i in 0..d {
                    dx[i] = rstd * (g[i] - mg - xhat[i] * mgx);
                }
            }
        }
    }
}

/// `y = LayerNorm(x)` over rows of `w.len()` features, in parallel.
pub(crate) fn forward(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let d = w.len();
    y.par_chunks_mut(ROWS * d).zip(x.par_chunks(ROWS * d)).for_each(|(y, x)| forward_rows(x, w, b, y));
}

/// Gradients of `LayerNorm(x)` given `dy`: `dx` is overwritten (or added to, with `accumulate`);
/// `dw` and `db` are overwritten.
pub(crate) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let d = w.len();
    let (pw, pb) = dx
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d).zip(dy.par_chunks(ROWS * d)))
        .map(|(dx, (x, dy))| {
            let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
            let (mut xhat, mut g) = (vec![0f32; d], vec![0f32; d]);
            backward_rows(x, w, dy, dx, accumulate, &mut dw, &mut db, &mut xhat, &mut g);
            (dw, db)
        })
        .reduce(
            || (vec![0f32; d], vec![0f32; d]),
            |(mut aw, mut ab), (bw, bb)| {
                aw.iter_mut().zip(bw).for_each(|(a, b)| *a += b);
                ab.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                (aw, ab)
            },
        );
    dw.copy_from_slice(&pw);
    db.copy_from_slice(&pb);
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
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
        let (x, w, b) =
            (f32_slice(sx, lx, "layer norm")?, f32_slice(sw, lw, "layer norm")?, f32_slice(sb, lb, "layer norm")?);
        let d = w.len();
        if lx.shape().dims().last() != Some(&d) || b.len() != d {
            candle_core::bail!("layer norm: input {:?} does not end in the {d} features of its weights", lx.shape());
        }
        // SAFETY: `forward` writes every row.
        let mut y = unsafe { output_buffer(x.len()) };
        forward(x, w, b, &mut y);
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        // SAFETY: `backward` writes every row.
        let mut dx = unsafe { output_buffer(x.elem_count()) };
        let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
        with_f32(x, "layer norm", |x| {
            with_f32(w, "layer norm", |w| {
                with_f32(dy, "layer norm", |dy| backward(x, w, dy, &mut dx, false, &mut dw, &mut db))
            })
        })???;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, d, dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}
