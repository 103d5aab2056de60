//! Causal multi-head self-attention over a packed `qkv` projection.
//!
//! `qkv: [B, T, 3·D]` holds queries, keys and values side by side (heads contiguous inside each, as
//! nanoGPT's `c_attn` produces them); the result is `[B, T, D]` with heads merged back, ready for the
//! output projection. Two implementations compute the same function:
//! - `causal_attention_ops`: plain differentiable candle ops, every device (CUDA uses it);
//! - the fused CPU kernel (`causal_attention_fused`): one custom op with a hand-written backward.
//!
//! `attend` is the op-level core shared with incremental decoding, where new queries see a key/value
//! cache in front of them.

pub(crate) mod fused;

use candle_core::{DType, Device, Result, Tensor, D};

/// Splits `qkv: [B, T, 3·D]` into `q, k, v`, each `[B, H, T, D/H]` and contiguous.
pub fn split_heads(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let part = |i: usize| qkv.narrow(2, i * d, d)?.reshape((b, t, heads, d / heads))?.transpose(1, 2)?.contiguous();
    Ok((part(0)?, part(1)?, part(2)?))
}

/// Merges `[B, H, T, hd]` back into `[B, T, H·hd]`.
pub fn merge_heads(y: &Tensor) -> Result<Tensor> {
    let (b, h, t, hd) = y.dims4()?;
    y.transpose(1, 2)?.contiguous()?.reshape((b, t, h * hd))
}

/// Attention of `q: [B, H, n, hd]` over `k, v: [B, H, L, hd]` where query `i` sits at absolute position
/// `L − n + i` and may see keys `0..=L − n + i`. Returns `[B, H, n, hd]`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_, _, n, hd) = q.dims4()?;
    let l = k.dim(2)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let offset = l - n;
    let mask: Vec<f32> =
        (0..n).flat_map(|i| (0..l).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    let mask = Tensor::from_vec(mask, (n, l), q.device())?;
    let probs = candle_nn::ops::softmax(&scores.broadcast_add(&mask)?, D::Minus1)?;
    probs.matmul(v)
}

/// The reference: plain differentiable candle ops.
pub fn causal_attention_ops(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (q, k, v) = split_heads(qkv, heads)?;
    merge_heads(&attend(&q, &k, &v)?)
}

/// The fused kernel for f32 on CPU, the op-level composition otherwise.
pub fn causal_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    match qkv.device() {
        Device::Cpu if qkv.dtype() == DType::F32 => causal_attention_fused(qkv, heads),
        _ => causal_attention_ops(qkv, heads),
    }
}

/// One custom op over the whole `[B, T, 3·D]` block (CPU, f32 only).
pub fn causal_attention_fused(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(fused::CausalAttention::new(heads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Var, D};

    use crate::nn::cpu::rel_err;

    #[test]
    fn fused_matches_ops_in_values_and_gradients() {
        // T = 150 spans three query blocks, the last one ragged.
        let (b, t, heads, hd) = (2, 150, 3, 8);
        let dev = Device::Cpu;
        let qkv = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (b, t, 3 * heads * hd), &dev).unwrap() * 1.5).unwrap())
            .unwrap();
        let probe = Tensor::randn(0f32, 1.0, (b, t, heads * hd), &dev).unwrap();
        let run = |f: fn(&Tensor, usize) -> Result<Tensor>| {
            let y = f(qkv.as_tensor(), heads).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(qkv.as_tensor()).unwrap().clone())
        };
        let (yf, gf) = run(causal_attention_fused);
        let (yo, go) = run(causal_attention_ops);
        assert!(rel_err(&yf, &yo) <= 1e-4, "values: {}", rel_err(&yf, &yo));
        for (part, name) in ["q", "k", "v"].iter().enumerate() {
            let (a, b) = (
                gf.narrow(D::Minus1, part * heads * hd, heads * hd).unwrap(),
                go.narrow(D::Minus1, part * heads * hd, heads * hd).unwrap(),
            );
            assert!(rel_err(&a, &b) <= 1e-4, "d{name}: {}", rel_err(&a, &b));
        }
    }
}
