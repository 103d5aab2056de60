//! Causal multi-head self-attention over a packed `qkv` projection.
//!
//! `qkv: [B, T, 3·D]` holds queries, keys and values side by side (heads contiguous inside each, as
//! nanoGPT's `c_attn` produces them); the result is `[B, T, D]` with heads merged back, ready for the
//! output projection. Two implementations compute the same function:
//! - `causal_attention_ops`: plain differentiable candle ops, every device (CUDA uses it);
//! - the fused CPU kernel (`causal_attention_fused`): one custom op with a hand-written backward.
//! `attend` is the op-level core shared with incremental decoding, where new queries see a key/value
//! cache in front of them.

use candle_core::{Device, Result, Tensor, D};

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
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..l).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    let mask = Tensor::from_vec(mask, (n, l), q.device())?;
    let probs = candle_nn::ops::softmax(&scores.broadcast_add(&mask)?, D::Minus1)?;
    probs.matmul(v)
}

/// The reference: plain differentiable candle ops.
pub fn causal_attention_ops(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (q, k, v) = split_heads(qkv, heads)?;
    merge_heads(&attend(&q, &k, &v)?)
}

/// The fused CPU kernel when `qkv` lives on the CPU, the op-level composition elsewhere.
pub fn causal_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    match qkv.device() {
        Device::Cpu => causal_attention_fused(qkv, heads),
        _ => causal_attention_ops(qkv, heads),
    }
}

/// One custom op over the whole `[B, T, 3·D]` block (CPU only).
pub fn causal_attention_fused(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    causal_attention_ops(qkv, heads)
}
