//! Small dense kernels for generation, where a step is a few matrix-vector products and candle's
//! per-op overhead would dominate. Dispatches to an AVX2+FMA+F16C body at run time when the CPU has it.
//!
//! A batch-1 step reads every weight once and does two flops with it, so its speed is the speed at
//! which weights stream from memory. `HalfMatrix` stores them as f16 (half the bytes) and widens
//! them to f32 in registers; all arithmetic stays f32.

use super::helper::Helper;
use half::f16;

/// A row-major `[rows, cols]` matrix stored in half precision.
pub struct HalfMatrix {
    pub rows: usize,
    pub cols: usize,
    data: Vec<f16>,
}

impl HalfMatrix {
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols);
        Self { rows, cols, data: w.iter().map(|&v| f16::from_f32(v)).collect() }
    }

    /// `out[b·rows + r] = bias[r] + Σ_k w[r, k] · x[b·cols + k]` for every vector b in `x`. One vector's
    /// rows are split with `helper` (a batch-1 step streams every weight once, and two cores pull
    /// more bandwidth than one); a batch's vectors are split over the rayon pool. Every output is
    /// computed exactly as without the split.
    pub fn matvec_add(&self, x: &[f32], bias: Option<&[f32]>, out: &mut [f32], helper: Option<&Helper>) {
        use rayon::prelude::*;
        let (rows, cols) = (self.rows, self.cols);
        let batch = x.len() / cols;
        assert_eq!(out.len(), batch * rows);
        let block = |r0: usize, n: usize, xs: &[f32], o: &mut [f32]| {
            half_matvec_add(&self.data[r0 * cols..(r0 + n) * cols], n, cols, xs, bias.map(|b| &b[r0..r0 + n]), o)
        };
        // Below this much work a split costs more than it saves.
        let big = rows * cols * batch >= 1 << 16;
        match helper {
            Some(h) if batch == 1 && big => {
                // Whole 4-row groups; the same half goes to the same thread at every step.
                let half = (rows / 2).next_multiple_of(4).min(rows);
                let (mine, theirs) = out.split_at_mut(half);
                let theirs = SyncPtr(theirs.as_mut_ptr());
                h.join(
                    || block(0, half, x, mine),
                    // SAFETY: the helper alone writes out[half..], which outlives the join.
                    &|| block(half, rows - half, x, unsafe { std::slice::from_raw_parts_mut(theirs.get(), rows - half) }),
                );
            }
            _ if batch > 1 && big && rayon::current_num_threads() > 1 => {
                let per = batch.div_ceil(rayon::current_num_threads());
                out.par_chunks_mut(per * rows).zip(x.par_chunks(per * cols)).for_each(|(o, xs)| block(0, rows, xs, o));
            }
            _ => block(0, rows, x, out),
        }
    }
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: used only to hand one thread a block of a buffer that no other thread touches meanwhile.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}
impl SyncPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// A weight element the kernels can read: f32 as it is, f16 widened to f32.
trait Weight: Copy + Send + Sync {
    fn to_f32(self) -> f32;
    /// Eight consecutive weights as f32 lanes.
    ///
    /// # Safety
    /// `p` must be valid for eight reads, and the CPU must have AVX2 (and F16C for f16).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Weight for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl Weight for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// `out[b·rows + r] = bias[r] + Σ_k w[r·cols + k] · x[b·cols + k]` for every vector b in `x`.
pub fn matvec_add(w: &[f32], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    dispatch(w, rows, cols, x, bias, out)
}

/// `matvec_add` with f16 weights.
fn half_matvec_add(w: &[f16], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    dispatch(w, rows, cols, x, bias, out)
}

fn dispatch<W: Weight>(w: &[W], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    assert_eq!(w.len(), rows * cols);
    let batch = x.len() / cols;
    assert_eq!(out.len(), batch * rows);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            // SAFETY: the features this body is compiled for were just detected; slices are checked above.
            unsafe { matvec_avx2(w, rows, cols, x, batch, bias, out) };
            return;
        }
    }
    for r in 0..rows {
        for b in 0..batch {
            out[b * rows + r] = bias.map_or(0.0, |bs| bs[r]) + dot(&w[r * cols..(r + 1) * cols], &x[b * cols..(b + 1) * cols]);
        }
    }
}

fn dot<W: Weight>(w: &[W], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum()
}

/// Four rows at a time share each load of x; eight-wide FMAs. The batch loop sits inside the row
/// loop, so the weights stream from memory once per call whatever the batch (a block of four rows
/// stays in L1 while every vector uses it) and each output is summed in the same order as at batch 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn matvec_avx2<W: Weight>(w: &[W], rows: usize, cols: usize, x: &[f32], batch: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let split = cols / 8 * 8;
    let wp = w.as_ptr();
    let mut r = 0;
    while r + 4 <= rows {
        let base = wp.add(r * cols);
        for b in 0..batch {
            let xv = &x[b * cols..(b + 1) * cols];
            let xp = xv.as_ptr();
            let (mut a0, mut a1, mut a2, mut a3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut k = 0;
            while k < split {
                let xk = _mm256_loadu_ps(xp.add(k));
                a0 = _mm256_fmadd_ps(W::load8(base.add(k)), xk, a0);
                a1 = _mm256_fmadd_ps(W::load8(base.add(cols + k)), xk, a1);
                a2 = _mm256_fmadd_ps(W::load8(base.add(2 * cols + k)), xk, a2);
                a3 = _mm256_fmadd_ps(W::load8(base.add(3 * cols + k)), xk, a3);
                k += 8;
            }
            let mut s = [hsum(a0), hsum(a1), hsum(a2), hsum(a3)];
            for (i, si) in s.iter_mut().enumerate() {
                for k in split..cols {
                    *si += w[(r + i) * cols + k].to_f32() * xv[k];
                }
                out[b * rows + r + i] = bias.map_or(0.0, |bs| bs[r + i]) + *si;
            }
        }
        r += 4;
    }
    for r in r..rows {
        for b in 0..batch {
            out[b * rows + r] = bias.map_or(0.0, |bs| bs[r]) + dot(&w[r * cols..(r + 1) * cols], &x[b * cols..(b + 1) * cols]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn half_weights_match_f32_with_rounded_weights() {
        let helper = Helper::spawn();
        for (rows, cols, batch) in [(2048, 512, 1), (162, 70, 1), (512, 256, 3)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0).collect();
            let rounded: Vec<f32> = w.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let x: Vec<f32> = (0..batch * cols).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 / 10.0).collect();
            let (mut a, mut b) = (vec![0.0; batch * rows], vec![0.0; batch * rows]);
            matvec_add(&rounded, rows, cols, &x, Some(&bias), &mut a);
            let m = HalfMatrix::from_f32(&w, rows, cols);
            m.matvec_add(&x, Some(&bias), &mut b, helper.as_ref());
            assert_eq!(a, b, "{rows}x{cols} batch {batch}");
            // Each vector of a batch gets exactly what it gets alone (a stream's text must not
            // depend on how many streams run beside it).
            for i in 0..batch {
                let mut one = vec![0.0; rows];
                m.matvec_add(&x[i * cols..(i + 1) * cols], Some(&bias), &mut one, helper.as_ref());
                assert_eq!(one, b[i * rows..(i + 1) * rows], "vector {i} of {batch}");
            }
        }
    }

    #[test]
    fn matches_naive() {
        let (rows, cols, batch) = (11, 37, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let x: Vec<f32> = (0..batch * cols).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32).collect();
        let mut out = vec![0.0; batch * rows];
        matvec_add(&w, rows, cols, &x, Some(&bias), &mut out);
        for b in 0..batch {
            for r in 0..rows {
                let want: f32 = bias[r] + (0..cols).map(|k| w[r * cols + k] * x[b * cols + k]).sum::<f32>();
                assert!((out[b * rows + r] - want).abs() < 1e-4);
            }
        }
    }
}
