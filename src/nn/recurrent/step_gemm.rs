//! The per-step recurrent product `C[b, :] (+)= A[b, :] · Wm` on AVX-512, with the weight packed
//! once per forward/backward call instead of once per step.
//!
//! The `gemm` crate (what candle uses) runs AVX2 kernels on stable Rust and repacks the weight on
//! every call; for the per-step shapes (B ≈ 32 rows against a 1–4 MB weight) that repacking cost
//! about a third of the multiply. Here the weight is packed into 32-column panels `[k][32]`; a tile
//! of up to 12 rows × 32 columns keeps its 24 accumulators in zmm registers over the whole k.
//! Callers fall back to `gemm` when AVX-512 is missing.

use rayon::prelude::*;

/// Columns per packed panel (two zmm registers).
const NR: usize = 32;
/// Rows per register tile.
const MR: usize = 12;
/// Multiply-adds below which one thread does the whole product.
const PAR_MIN: usize = 1 << 18;

/// Whether the AVX-512 kernel runs. `GEN_NO_AVX512=1` forces the `gemm` fallback (to test it on
/// machines that have AVX-512).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("GEN_NO_AVX512").is_none_or(|v| v != "1")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A `[k, n]` matrix packed into `ceil(n / 32)` panels of `[k][32]`, zero-padded.
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl Packed {
    /// Packs `Wm[kk, j] = src[kk·s_k + j·s_j]` for `kk < k`, `j < n`.
    pub fn new(k: usize, n: usize, src: &[f32], s_k: usize, s_j: usize) -> Packed {
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        panels.par_chunks_mut(k * NR).enumerate().for_each(|(p, panel)| {
            let cols = (n - p * NR).min(NR);
            for kk in 0..k {
                let dst = &mut panel[kk * NR..kk * NR + cols];
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = src[kk * s_k + (p * NR + c) * s_j];
                }
            }
        });
        Packed { k, n, panels }
    }
}

#[derive(Clone, Copy)]
struct Ptrs {
    a: *const f32,
    c: *mut f32,
}
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

impl Ptrs {
    // Accessors, so closures capture the whole (Sync) struct rather than its raw-pointer fields.
    fn a(&self) -> *const f32 {
        self.a
    }
    fn c(&self) -> *mut f32 {
        self.c
    }
}

/// `C[b·c_rs + j] (+)= Σ_kk A[b·a_rs + kk·a_cs] · Wm[kk, j]` for `b < m`, `j < w.n`.
///
/// # Safety
/// AVX-512F must be available ([`available`]); `a` and `c` must be valid for the given shapes and
/// strides, and `c` must not overlap `a`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_packed(m: usize, a: *const f32, a_rs: usize, a_cs: usize, w: &Packed, c: *mut f32, c_rs: usize, acc: bool) {
    let np = w.n.div_ceil(NR);
    let ptrs = Ptrs { a, c };
    let threads = rayon::current_num_threads();
    // Work items: (panel range, row range). Split panels when there are enough of them (each thread
    // then keeps its share of the weight in its own cache), rows otherwise.
    let run = |panels: std::ops::Range<usize>, rows: std::ops::Range<usize>| {
        for p in panels {
            let cols = (w.n - p * NR).min(NR);
            let panel = w.panels.as_ptr().add(p * w.k * NR);
            let mut r = rows.start;
            while r < rows.end {
                let mb = (rows.end - r).min(MR);
                let a = ptrs.a().add(r * a_rs);
                let c = ptrs.c().add(r * c_rs + p * NR);
                tile_dispatch(mb, w.k, a, a_rs, a_cs, panel, c, c_rs, acc, cols);
                r += mb;
            }
        }
    };
    if threads <= 1 || m * w.n * w.k < PAR_MIN {
        run(0..np, 0..m);
    } else if np >= 2 * threads {
        let chunk = np.div_ceil(threads);
        (0..threads).into_par_iter().for_each(|i| run(i * chunk..((i + 1) * chunk).min(np), 0..m));
    } else {
        let chunk = m.div_ceil(threads).next_multiple_of(MR).min(m);
        (0..m.div_ceil(chunk)).into_par_iter().for_each(|i| run(0..np, i * chunk..((i + 1) * chunk).min(m)));
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_dispatch(mb: usize, k: usize, a: *const f32, a_rs: usize, a_cs: usize, p: *const f32, c: *mut f32, c_rs: usize, acc: bool, cols: usize) {
    macro_rules! t {
        ($($n:literal)*) => {
            match mb { $($n => tile::<$n>(k, a, a_rs, a_cs, p, c, c_rs, acc, cols),)* _ => unreachable!() }
        };
    }
    t!(1 2 3 4 5 6 7 8 9 10 11 12)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MB: usize>(k: usize, a: *const f32, a_rs: usize, a_cs: usize, p: *const f32, c: *mut f32, c_rs: usize, acc: bool, cols: usize) {
    use std::arch::x86_64::*;
    let mut c0 = [_mm512_setzero_ps(); MB];
    let mut c1 = [_mm512_setzero_ps(); MB];
    for kk in 0..k {
        let w0 = _mm512_loadu_ps(p.add(kk * NR));
        let w1 = _mm512_loadu_ps(p.add(kk * NR + 16));
        let ak = a.add(kk * a_cs);
        for r in 0..MB {
            let av = _mm512_set1_ps(*ak.add(r * a_rs));
            c0[r] = _mm512_fmadd_ps(av, w0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, w1, c1[r]);
        }
    }
    let m0: __mmask16 = if cols >= 16 { 0xFFFF } else { (1u32 << cols) as u16 - 1 };
    let m1: __mmask16 = if cols >= 32 { 0xFFFF } else if cols <= 16 { 0 } else { (1u32 << (cols - 16)) as u16 - 1 };
    for r in 0..MB {
        let d = c.add(r * c_rs);
        let (mut v0, mut v1) = (c0[r], c1[r]);
        if acc {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, d));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, d.add(16)));
        }
        _mm512_mask_storeu_ps(d, m0, v0);
        _mm512_mask_storeu_ps(d.add(16), m1, v1);
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MB: usize>(_: usize, _: *const f32, _: usize, _: usize, _: *const f32, _: *mut f32, _: usize, _: bool, _: usize) {
    unreachable!("AVX-512 step GEMM called without AVX-512")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        if !available() {
            return;
        }
        let mut seed = 1u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, n, k) in &[(1, 1, 1), (5, 33, 7), (13, 64, 9), (32, 100, 40), (25, 31, 3), (300, 70, 17)] {
            let (a_rs, c_rs) = (k + 3, n + 5);
            let a: Vec<f32> = (0..m * a_rs).map(|_| rnd()).collect();
            // Wm[kk, j] = src[j·k + kk] (a transposed weight, like W_hhᵀ).
            let src: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let w = Packed::new(k, n, &src, 1, k);
            for (acc, a_t) in [(false, false), (true, false), (false, true), (true, true)] {
                // A row-major (stride a_rs) or transposed (A[b, kk] at kk·m + b).
                let (rs, cs) = if a_t { (1, m) } else { (a_rs, 1) };
                let c0: Vec<f32> = (0..m * c_rs).map(|_| rnd()).collect();
                let mut c = c0.clone();
                unsafe { gemm_packed(m, a.as_ptr(), rs, cs, &w, c.as_mut_ptr(), c_rs, acc) };
                for b in 0..m {
                    for j in 0..c_rs {
                        let want = if j < n {
                            let s: f32 = (0..k).map(|kk| a[b * rs + kk * cs] * src[j * k + kk]).sum();
                            s + if acc { c0[b * c_rs + j] } else { 0.0 }
                        } else {
                            c0[b * c_rs + j] // padding columns untouched
                        };
                        let got = c[b * c_rs + j];
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "m{m} n{n} k{k} acc{acc} [{b},{j}]: {got} vs {want}");
                    }
                }
            }
        }
    }
}
