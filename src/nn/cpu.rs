//! Raw f32 access and small numeric kernels for the fused CPU custom ops.
//!
//! The fused ops work on contiguous f32 buffers: they read candle storage in place, call the `gemm`
//! crate (the one candle's CPU matmul uses) on strided sub-matrices, and run their element-wise
//! loops in functions compiled for AVX-512 / AVX2 when the CPU has them (the crate itself is built for
//! baseline x86-64, where such loops would get 4-wide SSE only).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

/// The contiguous f32 data behind a custom op's input.
pub fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else { bail!("{what} expects f32, got {:?}", s.dtype()) };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what} expects a contiguous input"),
    }
}

/// Runs `f` on the f32 data of a CPU tensor (made contiguous first when it is not).
pub fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("{what} runs on CPU only") };
    Ok(f(f32_slice(cpu, layout, what)?))
}

/// An output buffer left unzeroed: the fused ops allocate ~100 MB of outputs per training step and
/// zeroing them cost ~10 % of the step (candle's own CPU kernels allocate outputs the same way).
///
/// # Safety
/// The caller writes every element before anything reads it, and never reads elements it did not
/// write.
#[allow(clippy::uninit_vec)] // deliberate, under the contract above
pub unsafe fn output_buffer(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.set_len(len);
    v
}

/// A raw pointer that parallel jobs may share because each writes a disjoint region.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// `dst[m×n] (+)= scale · lhs[m×k] · rhs[k×n]` on row-major strided views (`*_rs`: row stride,
/// `*_cs`: column stride, in elements), single-threaded: callers parallelise over independent jobs.
///
/// # Safety
/// Every pointer must address its whole view; `dst` must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    scale: f32,
) {
    gemm_with(
        gemm::Parallelism::None,
        m,
        n,
        k,
        dst,
        dst_rs,
        accumulate,
        lhs,
        lhs_rs,
        lhs_cs,
        rhs,
        rhs_rs,
        rhs_cs,
        scale,
    )
}

/// `matmul` for one large product, split by `gemm` over the rayon pool.
///
/// # Safety
/// As `matmul`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_par(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    let par = match rayon::current_num_threads() {
        1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    };
    gemm_with(par, m, n, k, dst, dst_rs, accumulate, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs, 1.0)
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with(
    par: gemm::Parallelism,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n).fill(0.0);
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1.0,
        scale,
        false,
        false,
        false,
        par,
    )
}

/// Runs `$body` (an expression over plain loops) compiled for the best SIMD level this CPU has.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// `exp(x)` to about 2 ulp (Cephes' polynomial), written so that loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // n = round(x / ln 2) via the 1.5·2²³ trick; its low bits then hold n.
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    e * two_n
}

/// Lane-parallel reductions: plain `iter().sum()` keeps IEEE order and never vectorises.
const LANES: usize = 16;

#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let c = a.chunks_exact(LANES);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let c = a.chunks_exact(LANES);
    let tail = c.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for x in c {
        for l in 0..LANES {
            acc[l] = if x[l] > acc[l] { x[l] } else { acc[l] };
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// In-place softmax of one row (inline building block for dispatched kernels).
#[inline(always)]
pub fn softmax_inline(row: &mut [f32]) {
    let m = max(row);
    row.iter_mut().for_each(|v| *v = exp(*v - m));
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

simd_dispatch! {
    /// In-place softmax of one row.
    pub fn softmax(row: &mut [f32]) {
        softmax_inline(row)
    }
}

simd_dispatch! {
    /// Softmax backward for one row, in place: `ds ← scale · p ⊙ (dp − Σ p ⊙ dp)`.
    pub fn softmax_backward(p: &[f32], dp: &mut [f32], scale: f32) {
        let d = dot(p, dp);
        for (g, &pv) in dp.iter_mut().zip(p) {
            *g = scale * pv * (*g - d);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_exp_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (super::exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}) = {a}, want {b}");
        }
        assert_eq!(super::exp(-1e30), super::exp(-87.3));
    }
}

/// `max|a − b| / max|b|`: the tolerance measure the fused-vs-op-level tests share.
#[cfg(test)]
pub(crate) fn rel_err(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}
