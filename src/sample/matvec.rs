//! Small dense kernels for generation, where a step is a few matrix-vector products and candle's
//! per-op overhead would dominate. Dispatches to an AVX2+FMA body at run time when the CPU has it.

/// `out[b·rows + r] = bias[r] + Σ_k w[r·cols + k] · x[b·cols + k]` for every vector b in `x`.
pub fn matvec_add(w: &[f32], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    assert_eq!(w.len(), rows * cols);
    let batch = x.len() / cols;
    assert_eq!(out.len(), batch * rows);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features this body is compiled for were just detected; slices are checked above.
            unsafe { matvec_avx2(w, rows, cols, x, batch, bias, out) };
            return;
        }
    }
    matvec_plain(w, rows, cols, x, batch, bias, out);
}

/// `matvec_add` split over the rayon pool: by rows for one vector (a batch-1 step streams every
/// weight once, and two cores read twice the bandwidth of one), by vectors for a batch.
pub fn par_matvec_add(w: &[f32], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let batch = x.len() / cols;
    // Below this much work the fork-join costs more than it saves.
    if threads == 1 || rows * cols * batch < 1 << 16 {
        return matvec_add(w, rows, cols, x, bias, out);
    }
    if batch == 1 {
        // Blocks of whole 4-row groups, a few per thread so an unlucky thread can catch up.
        let chunk = rows.div_ceil(2 * threads).next_multiple_of(4);
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
            let r0 = i * chunk;
            let n = o.len();
            matvec_add(&w[r0 * cols..(r0 + n) * cols], n, cols, x, bias.map(|b| &b[r0..r0 + n]), o);
        });
    } else {
        let per = batch.div_ceil(threads);
        out.par_chunks_mut(per * rows).zip(x.par_chunks(per * cols)).for_each(|(o, xs)| matvec_add(w, rows, cols, xs, bias, o));
    }
}

fn matvec_plain(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for b in 0..batch {
            let xv = &x[b * cols..(b + 1) * cols];
            let s: f32 = row.iter().zip(xv).map(|(a, b)| a * b).sum();
            out[b * rows + r] = bias.map_or(0.0, |bs| bs[r]) + s;
        }
    }
}

/// Four rows at a time share each load of x; eight-wide FMAs. The batch loop sits inside the row
/// loop, so the weights stream from memory once per call whatever the batch (a block of four rows
/// stays in L1 while every vector uses it) and each output is summed in the same order as at batch 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matvec_avx2(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    use std::arch::x86_64::*;
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
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
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(base.add(k)), xk, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(base.add(cols + k)), xk, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(base.add(2 * cols + k)), xk, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(base.add(3 * cols + k)), xk, a3);
                k += 8;
            }
            let mut s = [hsum(a0), hsum(a1), hsum(a2), hsum(a3)];
            for (i, si) in s.iter_mut().enumerate() {
                for k in split..cols {
                    *si += w[(r + i) * cols + k] * xv[k];
                }
                out[b * rows + r + i] = bias.map_or(0.0, |bs| bs[r + i]) + *si;
            }
        }
        r += 4;
    }
    for r in r..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for b in 0..batch {
            let s: f32 = row.iter().zip(&x[b * cols..(b + 1) * cols]).map(|(a, b)| a * b).sum();
            out[b * rows + r] = bias.map_or(0.0, |bs| bs[r]) + s;
        }
    }
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parallel_matches_serial() {
        for (rows, cols, batch) in [(2048, 512, 1), (162, 512, 1), (1030, 70, 1), (512, 256, 5)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0).collect();
            let x: Vec<f32> = (0..batch * cols).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 / 10.0).collect();
            let (mut a, mut b) = (vec![0.0; batch * rows], vec![0.0; batch * rows]);
            matvec_add(&w, rows, cols, &x, Some(&bias), &mut a);
            par_matvec_add(&w, rows, cols, &x, Some(&bias), &mut b);
            assert_eq!(a, b, "{rows}x{cols} batch {batch}");
            // Each vector of a batch gets exactly what it gets alone (a stream's text must not
            // depend on how many streams run beside it).
            for i in 0..batch {
                let mut one = vec![0.0; rows];
                matvec_add(&w, rows, cols, &x[i * cols..(i + 1) * cols], Some(&bias), &mut one);
                assert_eq!(one, a[i * rows..(i + 1) * rows], "vector {i} of {batch}");
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
