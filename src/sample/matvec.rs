//! Small dense kernels for generation, where a step is a few matrix-vector products and candle's
//! per-op overhead would dominate. Dispatches to an AVX2+FMA body at run time when the CPU has it.

/// `out[b·rows + r] = bias[r] + Σ_k w[r·cols + k] · x[b·cols + k]` for every vector b in `x`.
pub fn matvec_add(w: &[f32], rows: usize, cols: usize, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    debug_assert_eq!(w.len(), rows * cols);
    let batch = x.len() / cols;
    debug_assert_eq!(out.len(), batch * rows);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features this body is compiled for were just detected.
            unsafe { matvec_fma(w, rows, cols, x, batch, bias, out) };
            return;
        }
    }
    matvec_plain(w, rows, cols, x, batch, bias, out);
}

macro_rules! matvec_body {
    ($w:ident, $rows:ident, $cols:ident, $x:ident, $batch:ident, $bias:ident, $out:ident, $fma:expr) => {{
        const L: usize = 16;
        let split = $cols / L * L;
        for r in 0..$rows {
            let row = &$w[r * $cols..(r + 1) * $cols];
            let b0 = $bias.map_or(0.0, |b| b[r]);
            for b in 0..$batch {
                let xv = &$x[b * $cols..(b + 1) * $cols];
                let mut acc = [0f32; L];
                for (wc, xc) in row[..split].chunks_exact(L).zip(xv[..split].chunks_exact(L)) {
                    for i in 0..L {
                        acc[i] = $fma(wc[i], xc[i], acc[i]);
                    }
                }
                let mut s = acc.iter().sum::<f32>();
                for k in split..$cols {
                    s += row[k] * xv[k];
                }
                $out[b * $rows + r] = b0 + s;
            }
        }
    }};
}

fn matvec_plain(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    matvec_body!(w, rows, cols, x, batch, bias, out, |a: f32, b: f32, c: f32| a * b + c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matvec_fma(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    matvec_body!(w, rows, cols, x, batch, bias, out, |a: f32, b: f32, c: f32| a.mul_add(b, c))
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn matches_naive() {
        let (rows, cols, batch) = (7, 37, 3);
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
