//! The fused CPU path: one candle `CustomOp3` runs the whole sequence (`kernels.rs` has the math).
//!
//! Wiring, chosen so that no tensor needing gradients is sliced per step:
//! - op inputs: `x` `[B, T, F]`, `params = W_hh ++ W_ih ++ b_hh ++ b_ih` (flat, so one cat),
//!   `state0 = h0 (++ c0)` `[S·B, H]`. The input projection for all steps is one GEMM inside the op,
//!   so the `[B, T, G·H]` pre-activations and their gradient never become candle tensors (candle
//!   would allocate, zero and add a gradient of that size),
//! - op output `[B·T + S·B, H]`: all outputs, then final h (and c); split by a few narrows on dim 0,
//!   which are contiguous views.
//!
//! The forward sweep stashes its activations in the op instance (one per call) for `bwd`.

use super::kernels::{self, Dims, Stash};
use super::{Cell, Recurrent, State, Steps};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use std::sync::Mutex;

struct RecurrentOp {
    dims: Dims,
    lens: Vec<usize>,
    resets: Vec<bool>,
    stash: Mutex<Option<Stash>>,
}

/// The contiguous f32 data of a CPU tensor argument.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fused recurrent op expects f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fused recurrent op expects contiguous inputs"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("fused recurrent op runs on the CPU only") };
    f(f32_slice(cpu, layout)?)
}

impl CustomOp3 for RecurrentOp {
    fn name(&self) -> &'static str {
        "fused-recurrent"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims;
        let rows = d.b * d.t + d.s() * d.b;
        let mut out = vec![0f32; rows * d.h];
        let stash = kernels::forward(d, &self.lens, &self.resets, f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?, &mut out);
        *self.stash.lock().unwrap() = Some(stash);
        Ok((CpuStorage::F32(out), Shape::from((rows, d.h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        state0: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.stash.lock().unwrap();
        let Some(stash) = guard.as_ref() else { bail!("fused recurrent op: backward before forward") };
        let g = with_data(x, |x| {
            with_data(params, |p| with_data(grad_res, |dout| Ok(kernels::backward(self.dims, &self.lens, &self.resets, x, p, stash, dout))))
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(g.dx, x.shape(), dev)?),
            Some(Tensor::from_vec(g.dparams, params.shape(), dev)?),
            Some(Tensor::from_vec(g.dstate0, state0.shape(), dev)?),
        ))
    }
}

/// Whether the fused op can run these tensors (CPU, f32).
pub fn supported(layer: &Recurrent, x: &Tensor, state: &State) -> bool {
    let mut ts = vec![x, &layer.w_ih, &layer.w_hh, &layer.b_ih, &layer.b_hh, &state.h];
    ts.extend(state.c.as_ref());
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

pub fn forward(layer: &Recurrent, x: &Tensor, state: &State, steps: Steps) -> Result<(Tensor, State)> {
    let (b, t, f) = x.dims3()?;
    if t == 0 {
        bail!("recurrent layer needs at least one time step");
    }
    let (h, cell) = (layer.hidden_size, layer.cell);
    let params = Tensor::cat(&[&layer.w_hh.flatten_all()?, &layer.w_ih.flatten_all()?, &layer.b_hh, &layer.b_ih], 0)?;
    let state0 = match (cell, &state.c) {
        (Cell::Lstm, Some(c)) => Tensor::cat(&[&state.h, c], 0)?,
        (Cell::Lstm, None) => bail!("LSTM state needs c"),
        _ => state.h.contiguous()?,
    };
    let dims = Dims { cell, b, t, f, h };
    let lens = steps.lengths.map_or_else(|| vec![t; b], <[usize]>::to_vec);
    let resets = steps.resets.map_or_else(Vec::new, <[bool]>::to_vec);
    let op = RecurrentOp { dims, lens, resets, stash: Mutex::new(None) };
    let out = x.contiguous()?.apply_op3(&params, &state0, op)?;
    let outputs = out.narrow(0, 0, b * t)?.reshape((b, t, h))?;
    let h_final = out.narrow(0, b * t, b)?;
    let c_final = (cell == Cell::Lstm).then(|| out.narrow(0, b * t + b, b)).transpose()?;
    Ok((outputs, State { h: h_final, c: c_final }))
}
