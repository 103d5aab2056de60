//! The two residual sub-blocks of a layer, each as one CPU custom op with a hand-written backward
//! (the training path on CPU):
//!
//! - `AttentionBlock`: `x + mask ⊙ proj(attention(qkv(ln1(x))))`
//! - `MlpBlock`:       `x + mask ⊙ proj(gelu(fc(ln2(x))))`
//!
//! Why whole sub-blocks: candle's backward allocates a zero gradient and adds into it for every input
//! of every graph node, and runs its element-wise ops on a spinning thread pool. Composed from one op
//! per kernel, a layer leaves ~20 such nodes over `[B·T, ≥D]` tensors; as two ops it leaves two. The
//! kernels are the same tested ones (`crate::nn::{layer_norm, linear, attention, gelu}`), called on
//! raw slices; intermediate activations are kept inside the op for its backward.
//!
//! A custom op takes at most three inputs, so each sub-block's six parameters enter packed into one
//! 1-D tensor (`pack`: a `cat` of ~200 KB per layer, whose backward routes each slice of the packed
//! gradient back to its parameter), and the residual-dropout mask is the third input (`[1]` when
//! dropout is off).

use crate::nn::attention::fused::{self as attention, Dims};
use crate::nn::cpu::{f32_slice, output_buffer, with_f32};
use crate::nn::{gelu, layer_norm::fused as layer_norm, linear};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Flattens and concatenates parameters, in the order the ops expect them.
pub(super) fn pack(params: &[&Tensor]) -> Result<Tensor> {
    Tensor::cat(&params.iter().map(|t| t.flatten_all()).collect::<Result<Vec<_>>>()?, 0)
}

/// Consecutive pieces of `lens` lengths.
fn split<const N: usize>(mut s: &[f32], lens: [usize; N]) -> [&[f32]; N] {
    lens.map(|l| {
        let (head, tail) = s.split_at(l);
        s = tail;
        head
    })
}

fn split_mut<const N: usize>(mut s: &mut [f32], lens: [usize; N]) -> [&mut [f32]; N] {
    lens.map(|l| {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(l);
        s = tail;
        head
    })
}

/// `out = x + mask ⊙ out` (no mask: `x + out`).
fn add_residual(x: &[f32], mask: Option<&[f32]>, out: &mut [f32]) {
    const CHUNK: usize = 16 * 1024;
    match mask {
        Some(m) => out
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(m.par_chunks(CHUNK)))
            .for_each(|(o, (x, m))| o.iter_mut().zip(x.iter().zip(m)).for_each(|(o, (x, m))| *o = x + m * *o)),
        None => out
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, x)| *o += x)),
    }
}

/// The gradient reaching the branch: `dy ⊙ mask`, or `dy` itself.
fn branch_grad<'a>(dy: &'a [f32], mask: Option<&[f32]>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match mask {
        Some(m) => {
            *buf = dy.par_iter().zip(m.par_iter()).map(|(g, m)| g * m).collect();
            buf
        }
        None => dy,
    }
}

/// The mask input: present when it covers every element of `x`.
fn mask_of(mask: &[f32], len: usize) -> Option<&[f32]> {
    (mask.len() == len).then_some(mask)
}

fn check(x: &Layout, params: &Layout, expect: usize, rows: usize, d: usize, what: &str) -> Result<()> {
    if x.shape().dims() != [rows, d] || params.shape().elem_count() != expect {
        candle_core::bail!(
            "{what}: expects x [{rows}, {d}] and {expect} packed parameters, got {:?} and {:?}",
            x.shape(),
            params.shape()
        );
    }
    Ok(())
}

/// Activations the attention sub-block keeps for its backward.
struct AttentionSaved {
    h: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    a: Vec<f32>,
}

/// `x: [B·T, D]` → `x + mask ⊙ proj(attention(qkv(ln1(x))))`. Packed parameters, in order:
/// `ln1.weight, ln1.bias, qkv.weight, qkv.bias, proj.weight, proj.bias`.
pub(super) struct AttentionBlock {
    dims: Dims,
    rows: usize,
    d: usize,
    saved: Mutex<Option<AttentionSaved>>,
}

impl AttentionBlock {
    pub(super) fn new(b: usize, t: usize, heads: usize, d: usize) -> Self {
        Self { dims: Dims::new(b, t, heads, d), rows: b * t, d, saved: Mutex::new(None) }
    }

    fn lens(&self) -> [usize; 6] {
        let d = self.d;
        [d, d, 3 * d * d, 3 * d, d * d, d]
    }
}

impl CustomOp3 for AttentionBlock {
    fn name(&self) -> &'static str {
        "attention-block"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        sm: &CpuStorage,
        lm: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = (self.rows, self.d);
        check(lx, lp, self.lens().iter().sum(), n, d, "attention block")?;
        let (x, p, m) = (
            f32_slice(sx, lx, "attention block")?,
            f32_slice(sp, lp, "attention block")?,
            f32_slice(sm, lm, "attention block")?,
        );
        let [ln_w, ln_b, qkv_w, qkv_b, proj_w, proj_b] = split(p, self.lens());
        // SAFETY: each buffer is fully written by the kernel that produces it (`probs`: the blocks
        // attention's backward reads).
        let (mut h, mut qkv, mut probs, mut a, mut out) = unsafe {
            (
                output_buffer(n * d),
                output_buffer(n * 3 * d),
                output_buffer(self.dims.probs_len()),
                output_buffer(n * d),
                output_buffer(n * d),
            )
        };
        layer_norm::forward(x, ln_w, ln_b, &mut h);
        linear::forward_into(&h, qkv_w, qkv_b, &mut qkv);
        attention::forward(self.dims, &qkv, &mut a, &mut probs);
        linear::forward_into(&a, proj_w, proj_b, &mut out);
        add_residual(x, mask_of(m, n * d), &mut out);
        *self.saved.lock().unwrap() = Some(AttentionSaved { h, qkv, probs, a });
        Ok((CpuStorage::F32(out), Shape::from((n, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = (self.rows, self.d);
        let saved = self.saved.lock().unwrap();
        let Some(s) = saved.as_ref() else { candle_core::bail!("attention block: backward before forward") };
        let mut dp = vec![0f32; p.elem_count()];
        let dx = with_inputs("attention block", [x, p, m, dy], |x, p, m, dy| {
            let [ln_w, _, qkv_w, _, proj_w, _] = split(p, self.lens());
            let [d_ln_w, d_ln_b, d_qkv_w, d_qkv_b, d_proj_w, d_proj_b] = split_mut(&mut dp, self.lens());
            let mut masked = Vec::new();
            let dbranch = branch_grad(dy, mask_of(m, n * d), &mut masked);
            // SAFETY: each buffer is overwritten by the kernel that produces it.
            let (mut da, mut dqkv, mut dh) =
                unsafe { (output_buffer(n * d), output_buffer(n * 3 * d), output_buffer(n * d)) };
            linear::backward_into(&s.a, proj_w, dbranch, Some((&mut da, false)), d_proj_w, d_proj_b);
            attention::backward(self.dims, &s.qkv, &s.probs, &da, &mut dqkv);
            linear::backward_into(&s.h, qkv_w, &dqkv, Some((&mut dh, false)), d_qkv_w, d_qkv_b);
            let mut dx = dy.to_vec();
            layer_norm::backward(x, ln_w, &dh, &mut dx, true, d_ln_w, d_ln_b);
            dx
        })?;
        let dev = x.device();
        Ok((Some(Tensor::from_vec(dx, (n, d), dev)?), Some(Tensor::from_vec(dp, p.elem_count(), dev)?), None))
    }
}

/// Runs `f` on the f32 data of what a block's backward reads: input, packed parameters, mask and
/// output gradient.
fn with_inputs<R>(what: &str, [x, p, m, dy]: [&Tensor; 4], f: impl FnOnce(&[f32], &[f32], &[f32], &[f32]) -> R) -> Result<R> {
    with_f32(x, what, |x| with_f32(p, what, |p| with_f32(m, what, |m| with_f32(dy, what, |dy| f(x, p, m, dy)))))???
}

/// Activations the MLP sub-block keeps for its backward.
struct MlpSaved {
    h: Vec<f32>,
    u: Vec<f32>,
    g: Vec<f32>,
}

/// `x: [N, D]` → `x + mask ⊙ proj(gelu(fc(ln2(x))))`. Packed parameters, in order:
/// `ln2.weight, ln2.bias, fc.weight, fc.bias, proj.weight, proj.bias`.
pub(super) struct MlpBlock {
    rows: usize,
    d: usize,
    saved: Mutex<Option<MlpSaved>>,
}

impl MlpBlock {
    pub(super) fn new(rows: usize, d: usize) -> Self {
        Self { rows, d, saved: Mutex::new(None) }
    }

    fn lens(&self) -> [usize; 6] {
        let d = self.d;
        [d, d, 4 * d * d, 4 * d, 4 * d * d, d]
    }
}

impl CustomOp3 for MlpBlock {
    fn name(&self) -> &'static str {
        "mlp-block"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        sm: &CpuStorage,
        lm: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = (self.rows, self.d);
        check(lx, lp, self.lens().iter().sum(), n, d, "mlp block")?;
        let (x, p, m) =
            (f32_slice(sx, lx, "mlp block")?, f32_slice(sp, lp, "mlp block")?, f32_slice(sm, lm, "mlp block")?);
        let [ln_w, ln_b, fc_w, fc_b, proj_w, proj_b] = split(p, self.lens());
        // SAFETY: each buffer is fully written by the kernel that produces it.
        let (mut h, mut u, mut g, mut out) =
            unsafe { (output_buffer(n * d), output_buffer(n * 4 * d), output_buffer(n * 4 * d), output_buffer(n * d)) };
        layer_norm::forward(x, ln_w, ln_b, &mut h);
        linear::forward_into(&h, fc_w, fc_b, &mut u);
        gelu::forward_into(&u, &mut g);
        linear::forward_into(&g, proj_w, proj_b, &mut out);
        add_residual(x, mask_of(m, n * d), &mut out);
        *self.saved.lock().unwrap() = Some(MlpSaved { h, u, g });
        Ok((CpuStorage::F32(out), Shape::from((n, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = (self.rows, self.d);
        let saved = self.saved.lock().unwrap();
        let Some(s) = saved.as_ref() else { candle_core::bail!("mlp block: backward before forward") };
        let mut dp = vec![0f32; p.elem_count()];
        let dx = with_inputs("mlp block", [x, p, m, dy], |x, p, m, dy| {
            let [ln_w, _, fc_w, _, proj_w, _] = split(p, self.lens());
            let [d_ln_w, d_ln_b, d_fc_w, d_fc_b, d_proj_w, d_proj_b] = split_mut(&mut dp, self.lens());
            let mut masked = Vec::new();
            let dbranch = branch_grad(dy, mask_of(m, n * d), &mut masked);
            // SAFETY: each buffer is overwritten by the kernel that produces it.
            let (mut dg, mut du, mut dh) =
                unsafe { (output_buffer(n * 4 * d), output_buffer(n * 4 * d), output_buffer(n * d)) };
            linear::backward_into(&s.g, proj_w, dbranch, Some((&mut dg, false)), d_proj_w, d_proj_b);
            gelu::backward_into(&s.u, &dg, &mut du);
            linear::backward_into(&s.h, fc_w, &du, Some((&mut dh, false)), d_fc_w, d_fc_b);
            let mut dx = dy.to_vec();
            layer_norm::backward(x, ln_w, &dh, &mut dx, true, d_ln_w, d_ln_b);
            dx
        })?;
        let dev = x.device();
        Ok((Some(Tensor::from_vec(dx, (n, d), dev)?), Some(Tensor::from_vec(dp, p.elem_count(), dev)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::attention::causal_attention_ops;
    use crate::nn::layer_norm::LayerNorm;
    use crate::nn::linear::linear_ops;
    use candle_core::{Device, Var};

    use crate::nn::cpu::rel_err;

    fn var(shape: &[usize], mean: f32, std: f32) -> Var {
        Var::from_tensor(&Tensor::randn(mean, std, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Runs a sub-block both ways on the same dropout mask and compares the output and every gradient.
    /// Parameters: norm scale and shift, `[hidden, d]` input projection and bias, `[d, proj_in]` output
    /// projection and bias.
    fn compare(
        hidden: usize,
        proj_in: usize,
        fused: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
        ops: impl Fn(&Tensor, &[Tensor]) -> Tensor,
    ) {
        let (b, t, d) = (2, 70, 24);
        let x = var(&[b * t, d], 0.5, 1.0);
        let params = [
            var(&[d], 1.0, 0.2),
            var(&[d], 0.0, 0.2),
            var(&[hidden, d], 0.0, 0.3),
            var(&[hidden], 0.0, 0.1),
            var(&[d, proj_in], 0.0, 0.3),
            var(&[d], 0.0, 0.1),
        ];
        let all: Vec<Tensor> = params.iter().map(|v| v.as_tensor().clone()).collect();
        let keep = Tensor::rand(0f32, 1f32, (b * t, d), &Device::Cpu)
            .unwrap()
            .ge(0.2)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let mask = (keep * 1.25).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (b * t, d), &Device::Cpu).unwrap();
        let vars: Vec<&Var> = params.iter().chain([&x]).collect();
        let run = |y: Tensor| {
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, vars.iter().map(|v| g.get(v.as_tensor()).unwrap().clone()).collect::<Vec<_>>())
        };
        let packed = pack(&all.iter().collect::<Vec<_>>()).unwrap();
        let (yf, gf) = run(fused(x.as_tensor(), &packed, &mask));
        let (yo, go) = run((x.as_tensor() + (ops(x.as_tensor(), &all) * &mask).unwrap()).unwrap());
        assert!(rel_err(&yf, &yo) <= 1e-4, "values: {}", rel_err(&yf, &yo));
        for (i, (a, b)) in gf.iter().zip(&go).enumerate() {
            assert!(rel_err(a, b) <= 1e-4, "gradient {i}: {}", rel_err(a, b));
        }
    }

    #[test]
    fn attention_block_matches_ops_with_a_dropout_mask() {
        let (b, t, d, heads) = (2, 70, 24, 3);
        compare(
            3 * d,
            d,
            |x, p, m| x.apply_op3(p, m, AttentionBlock::new(b, t, heads, d)).unwrap(),
            |x, p| {
                let h = LayerNorm { weight: p[0].clone(), bias: p[1].clone() }.forward_ops(x).unwrap();
                let qkv = linear_ops(&h, &p[2], &p[3]).unwrap().reshape((b, t, 3 * d)).unwrap();
                let a = causal_attention_ops(&qkv, heads).unwrap().reshape((b * t, d)).unwrap();
                linear_ops(&a, &p[4], &p[5]).unwrap()
            },
        );
    }

    #[test]
    fn mlp_block_matches_ops_with_a_dropout_mask() {
        let (b, t, d) = (2, 70, 24);
        compare(
            4 * d,
            4 * d,
            |x, p, m| x.apply_op3(p, m, MlpBlock::new(b * t, d)).unwrap(),
            |x, p| {
                let h = LayerNorm { weight: p[0].clone(), bias: p[1].clone() }.forward_ops(x).unwrap();
                let g = linear_ops(&h, &p[2], &p[3]).unwrap().gelu().unwrap();
                linear_ops(&g, &p[4], &p[5]).unwrap()
            },
        );
    }
}
