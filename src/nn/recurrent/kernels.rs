//! Raw f32 slice math for the fused recurrent layer (no candle types): fast activations, a GEMM
//! wrapper, and per-cell forward / backward-through-time sweeps over a whole sequence.
//!
//! Layouts are row-major and batch-major like the layer's tensors, so no transposes are needed:
//! - `xw`    `[B, T, G·H]`  input projection x·W_ihᵀ (biases are added here),
//! - `w`     `[G·H, H]`     W_hh,
//! - `hprev` `[B, T, H]`    the state before step t (`hprev[:, 0] = h0`): the LHS of step t's gate
//!   GEMM (row stride T·H) and, viewed as `[B·T, H]`, of the single dW_hh GEMM after the sweep,
//! - `out`   `[B·T + S·B, H]` outputs (zero past a sequence's length), then final h (and final c).
//!
//! Steps t ≥ len[b] leave b's state as it is: they write no gate gradients and pass dh/dc through.

use super::Cell;
use gemm::Parallelism;
use rayon::prelude::*;
use std::ops::Range;

// ---------------------------------------------------------------- activations

/// e^x via Cephes' expf: x = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from exponent bits.
/// Branch-free so the row loops vectorize; relative error ~1e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to nearest
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh: Cephes' odd polynomial below |x| = 0.625 (no cancellation near 0), 1 − 2/(e^{2|x|}+1) above.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let big = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    let z = x * x;
    let mut p = -5.704_988_7e-3_f32;
    p = p * z + 2.063_909e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z - 3.333_328e-1;
    let small = x + x * z * p;
    if a < 0.625 {
        small
    } else {
        big
    }
}

// ---------------------------------------------------------------- GEMM and threading

/// Work (m·n·k multiply-adds) below which a GEMM runs on one thread: rayon's fork/join costs more
/// than it saves on small per-step products.
const GEMM_PAR_MIN: usize = 1 << 19;
/// Elements per step below which the gate pass runs on one thread.
const ROWS_PAR_MIN: usize = 1 << 15;

/// A strided matrix operand: element (i, j) is at `ptr[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

/// `dst[m×n]` (row stride `dst_rs`) = (`acc` ? dst : 0) + lhs[m×k] · rhs[k×n].
///
/// # Safety
/// All pointers must be valid for the given shapes and strides; dst must not overlap the operands.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, acc: bool, lhs: Mat, rhs: Mat) {
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= GEMM_PAR_MIN { Parallelism::Rayon(threads) } else { Parallelism::None };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        acc,
        lhs.ptr,
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.ptr,
        rhs.cs as isize,
        rhs.rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    );
}

/// Runs `f` over the batch rows `0..b`, split across rayon threads when a step is large enough.
fn for_rows(b: usize, elems_per_row: usize, f: impl Fn(Range<usize>) + Sync) {
    let threads = rayon::current_num_threads();
    if threads > 1 && b > 1 && b * elems_per_row >= ROWS_PAR_MIN {
        let chunk = b.div_ceil(threads);
        (0..b.div_ceil(chunk)).into_par_iter().for_each(|i| f(i * chunk..((i + 1) * chunk).min(b)));
    } else {
        f(0..b)
    }
}

/// Compiles an `#[inline(always)]` row kernel `$body(ctx, rows)` three times (AVX-512, AVX2+FMA,
/// baseline) and picks one at run time, so the gate math is vectorized without `target-cpu`.
macro_rules! simd_dispatch {
    ($name:ident, $ctx:ty, $body:path) => {
        fn $name(ctx: &$ctx, rows: Range<usize>) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v512(ctx: &$ctx, rows: Range<usize>) {
                    $body(ctx, rows)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256(ctx: &$ctx, rows: Range<usize>) {
                    $body(ctx, rows)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return unsafe { v512(ctx, rows) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return unsafe { v256(ctx, rows) };
                }
            }
            // SAFETY: as for the vectorized versions: the caller hands disjoint rows to each thread.
            unsafe { $body(ctx, rows) }
        }
    };
}

/// A raw pointer that may be shared across the row threads: every thread touches disjoint rows.
#[derive(Clone, Copy)]
struct P(*mut f32);
unsafe impl Send for P {}
unsafe impl Sync for P {}

impl P {
    /// `len` elements from `off`.
    #[inline(always)]
    unsafe fn at<'a>(self, off: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
}

fn ptr(v: &mut [f32]) -> P {
    P(v.as_mut_ptr())
}

// ---------------------------------------------------------------- shapes and buffers

#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub cell: Cell,
    pub b: usize,
    pub t: usize,
    pub h: usize,
}

impl Dims {
    /// Gate rows G·H.
    pub fn g(&self) -> usize {
        self.cell.gates() * self.h
    }
    /// State tensors carried (h, and c for LSTM).
    pub fn s(&self) -> usize {
        if self.cell == Cell::Lstm {
            2
        } else {
            1
        }
    }
    /// Activations stashed per (b, t) for the backward pass.
    fn a(&self) -> usize {
        match self.cell {
            Cell::Lstm => 4 * self.h, // i, f, g, o
            Cell::Gru => 4 * self.h,  // r, z, n, W_hn·h + b_hn
            Cell::Rnn => self.h,      // h_t
        }
    }
}

/// What the forward sweep keeps for the backward sweep.
pub struct Stash {
    hprev: Vec<f32>,
    acts: Vec<f32>,
    /// LSTM: c before step t, `[B, T, H]`.
    cprev: Vec<f32>,
    /// LSTM: tanh(c_t), `[B, T, H]`.
    tanhc: Vec<f32>,
}

/// Gradients of the op's three inputs.
pub struct Grads {
    /// `[B, T, G·H]`
    pub dxw: Vec<f32>,
    /// dW_hh `[G·H·H]`, then db_hh `[G·H]`, then db_ih `[G·H]` (the op's packed parameter vector).
    pub dparams: Vec<f32>,
    /// dh0 `[B·H]` (then dc0 for LSTM).
    pub dstate0: Vec<f32>,
}

// ---------------------------------------------------------------- forward

struct Fwd<'a> {
    d: Dims,
    t: usize,
    lens: &'a [usize],
    xw: &'a [f32],
    /// h_{t−1}·W_hhᵀ, `[B, G·H]`.
    gh: &'a [f32],
    /// Biases applied to xw: b_ih + b_hh, except GRU's n gate which gets b_in only.
    bx: &'a [f32],
    /// GRU: b_hn, which sits inside r ⊙ (W_hn h + b_hn).
    bhn: &'a [f32],
    hprev: P,
    cprev: P,
    tanhc: P,
    acts: P,
    out: P,
}

impl Fwd<'_> {
    /// Where step t writes b's new h (and c): the next step's `hprev` row, or the final state.
    #[inline(always)]
    unsafe fn next_state<'a>(&self, b: usize) -> (&'a mut [f32], Option<&'a mut [f32]>) {
        let Dims { b: nb, t: nt, h, .. } = self.d;
        let lstm = self.d.cell == Cell::Lstm;
        if self.t + 1 < nt {
            let off = (b * nt + self.t + 1) * h;
            (self.hprev.at(off, h), lstm.then(|| self.cprev.at(off, h)))
        } else {
            (self.out.at((nb * nt + b) * h, h), lstm.then(|| self.out.at((nb * nt + nb + b) * h, h)))
        }
    }
}

#[inline(always)]
unsafe fn fwd_rows(c: &Fwd, rows: Range<usize>) {
    let Dims { cell, t: nt, h, .. } = c.d;
    let g = c.d.g();
    let a = c.d.a();
    let t = c.t;
    for b in rows {
        let bt = b * nt + t;
        let hp: &[f32] = c.hprev.at(bt * h, h);
        let (hn_out, cn_out) = c.next_state(b);
        if t >= c.lens[b] {
            hn_out.copy_from_slice(hp);
            if let Some(cn) = cn_out {
                cn.copy_from_slice(c.cprev.at(bt * h, h));
            }
            continue; // outputs past the length stay zero
        }
        let x = &c.xw[bt * g..bt * g + g];
        let gh = &c.gh[b * g..b * g + g];
        let y = c.out.at(bt * h, h);
        let act = c.acts.at(bt * a, a);
        match cell {
            Cell::Lstm => {
                let cp: &[f32] = c.cprev.at(bt * h, h);
                let tc = c.tanhc.at(bt * h, h);
                let cn = cn_out.unwrap();
                let (ai, rest) = act.split_at_mut(h);
                let (af, rest) = rest.split_at_mut(h);
                let (ag, ao) = rest.split_at_mut(h);
                for j in 0..h {
                    let i = sigmoid(x[j] + gh[j] + c.bx[j]);
                    let f = sigmoid(x[h + j] + gh[h + j] + c.bx[h + j]);
                    let gg = tanh(x[2 * h + j] + gh[2 * h + j] + c.bx[2 * h + j]);
                    let o = sigmoid(x[3 * h + j] + gh[3 * h + j] + c.bx[3 * h + j]);
                    let cc = f * cp[j] + i * gg;
                    let th = tanh(cc);
                    let hh = o * th;
                    ai[j] = i;
                    af[j] = f;
                    ag[j] = gg;
                    ao[j] = o;
                    cn[j] = cc;
                    tc[j] = th;
                    hn_out[j] = hh;
                    y[j] = hh;
                }
            }
            Cell::Gru => {
                let (ar, rest) = act.split_at_mut(h);
                let (az, rest) = rest.split_at_mut(h);
                let (an, ahn) = rest.split_at_mut(h);
                for j in 0..h {
                    let r = sigmoid(x[j] + gh[j] + c.bx[j]);
                    let z = sigmoid(x[h + j] + gh[h + j] + c.bx[h + j]);
                    let hn = gh[2 * h + j] + c.bhn[j];
                    let n = tanh(x[2 * h + j] + c.bx[2 * h + j] + r * hn);
                    let hh = n + z * (hp[j] - n);
                    ar[j] = r;
                    az[j] = z;
                    an[j] = n;
                    ahn[j] = hn;
                    hn_out[j] = hh;
                    y[j] = hh;
                }
            }
            Cell::Rnn => {
                for j in 0..h {
                    let hh = tanh(x[j] + gh[j] + c.bx[j]);
                    act[j] = hh;
                    hn_out[j] = hh;
                    y[j] = hh;
                }
            }
        }
    }
}

simd_dispatch!(fwd_step, Fwd, fwd_rows);

/// Runs the whole sequence. `params` = W_hh `[G·H, H]` ++ b_hh ++ b_ih; `state0` = h0 `[B, H]`
/// (++ c0 for LSTM); `out` is zeroed, `[B·T + S·B, H]`.
pub fn forward(d: Dims, lens: &[usize], xw: &[f32], params: &[f32], state0: &[f32], out: &mut [f32]) -> Stash {
    let Dims { cell, b: nb, t: nt, h } = d;
    let g = d.g();
    assert!(lens.len() == nb && xw.len() == nb * nt * g && params.len() == g * h + 2 * g);
    assert!(state0.len() == d.s() * nb * h && out.len() == (nb * nt + d.s() * nb) * h);
    let (w, biases) = params.split_at(g * h);
    let (b_hh, b_ih) = biases.split_at(g);
    let mut bx: Vec<f32> = b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect();
    let mut bhn = Vec::new();
    if cell == Cell::Gru {
        bx[2 * h..].copy_from_slice(&b_ih[2 * h..]);
        bhn.extend_from_slice(&b_hh[2 * h..]);
    }
    let lstm = cell == Cell::Lstm;
    let per_bt = if lstm { nb * nt * h } else { 0 };
    let mut s = Stash {
        hprev: vec![0.0; nb * nt * h],
        acts: vec![0.0; nb * nt * d.a()],
        cprev: vec![0.0; per_bt],
        tanhc: vec![0.0; per_bt],
    };
    for b in 0..nb {
        s.hprev[b * nt * h..][..h].copy_from_slice(&state0[b * h..][..h]);
        if lstm {
            s.cprev[b * nt * h..][..h].copy_from_slice(&state0[(nb + b) * h..][..h]);
        }
    }
    let mut gh = vec![0.0; nb * g];
    let out_p = P(out.as_mut_ptr());
    for t in 0..nt {
        // gh = h_{t−1} · W_hhᵀ: W_hhᵀ(k, j) = w[j·H + k].
        unsafe {
            gemm(
                nb,
                g,
                h,
                gh.as_mut_ptr(),
                g,
                false,
                Mat { ptr: s.hprev.as_ptr().add(t * h), rs: nt * h, cs: 1 },
                Mat { ptr: w.as_ptr(), rs: 1, cs: h },
            );
        }
        let ctx = Fwd {
            d,
            t,
            lens,
            xw,
            gh: &gh,
            bx: &bx,
            bhn: &bhn,
            hprev: ptr(&mut s.hprev),
            cprev: ptr(&mut s.cprev),
            tanhc: ptr(&mut s.tanhc),
            acts: ptr(&mut s.acts),
            out: out_p,
        };
        for_rows(nb, g, |rows| fwd_step(&ctx, rows));
    }
    s
}

// ---------------------------------------------------------------- backward

struct Bwd<'a> {
    d: Dims,
    t: usize,
    lens: &'a [usize],
    s: &'a Stash,
    dout: &'a [f32],
    /// Carried dL/dh_t and (LSTM) dL/dc_t, `[B, H]`; dc is updated in place.
    dh: &'a [f32],
    dc: P,
    /// dL/dh_{t−1} before the W_hh GEMM adds its part, `[B, H]`.
    dnext: P,
    /// Gradient w.r.t. the pre-activations fed by xw, `[B, T, G·H]`.
    dgx: P,
    /// GRU only: gradient w.r.t. h·W_hhᵀ + b_hh (differs from dgx in the n gate).
    dgh: P,
}

#[inline(always)]
unsafe fn bwd_rows(c: &Bwd, rows: Range<usize>) {
    let Dims { cell, t: nt, h, .. } = c.d;
    let g = c.d.g();
    let a = c.d.a();
    let t = c.t;
    for b in rows {
        let bt = b * nt + t;
        let dh_in = &c.dh[b * h..b * h + h];
        let dnext = c.dnext.at(b * h, h);
        if t >= c.lens[b] {
            dnext.copy_from_slice(dh_in); // state passed through; its gate rows stay zero
            continue;
        }
        let dy = &c.dout[bt * h..bt * h + h];
        let act = &c.s.acts[bt * a..bt * a + a];
        let dgx = c.dgx.at(bt * g, g);
        match cell {
            Cell::Lstm => {
                let cp = &c.s.cprev[bt * h..bt * h + h];
                let tc = &c.s.tanhc[bt * h..bt * h + h];
                let dc = c.dc.at(b * h, h);
                let (ai, rest) = act.split_at(h);
                let (af, rest) = rest.split_at(h);
                let (ag, ao) = rest.split_at(h);
                let (di, rest) = dgx.split_at_mut(h);
                let (df, rest) = rest.split_at_mut(h);
                let (dg, dout_o) = rest.split_at_mut(h);
                for j in 0..h {
                    let (i, f, gg, o, th) = (ai[j], af[j], ag[j], ao[j], tc[j]);
                    let dhh = dh_in[j] + dy[j];
                    let dcc = dc[j] + dhh * o * (1.0 - th * th);
                    dout_o[j] = dhh * th * o * (1.0 - o);
                    di[j] = dcc * gg * i * (1.0 - i);
                    dg[j] = dcc * i * (1.0 - gg * gg);
                    df[j] = dcc * cp[j] * f * (1.0 - f);
                    dc[j] = dcc * f;
                    dnext[j] = 0.0;
                }
            }
            Cell::Gru => {
                let hp = &c.s.hprev[bt * h..bt * h + h];
                let dgh = c.dgh.at(bt * g, g);
                let (ar, rest) = act.split_at(h);
                let (az, rest) = rest.split_at(h);
                let (an, ahn) = rest.split_at(h);
                let (dxr, rest) = dgx.split_at_mut(h);
                let (dxz, dxn) = rest.split_at_mut(h);
                let (dhr, rest) = dgh.split_at_mut(h);
                let (dhz, dhn) = rest.split_at_mut(h);
                for j in 0..h {
                    let (r, z, n, hn) = (ar[j], az[j], an[j], ahn[j]);
                    let dhh = dh_in[j] + dy[j];
                    let dn = dhh * (1.0 - z) * (1.0 - n * n);
                    let dr = dn * hn * r * (1.0 - r);
                    let dz = dhh * (hp[j] - n) * z * (1.0 - z);
                    dxr[j] = dr;
                    dxz[j] = dz;
                    dxn[j] = dn;
                    dhr[j] = dr;
                    dhz[j] = dz;
                    dhn[j] = dn * r;
                    dnext[j] = dhh * z;
                }
            }
            Cell::Rnn => {
                for j in 0..h {
                    let hh = act[j];
                    dgx[j] = (dh_in[j] + dy[j]) * (1.0 - hh * hh);
                    dnext[j] = 0.0;
                }
            }
        }
    }
}

simd_dispatch!(bwd_step, Bwd, bwd_rows);

/// Column sums of a `[rows, cols]` matrix.
fn col_sums(m: &[f32], cols: usize, dst: &mut [f32]) {
    dst.fill(0.0);
    for row in m.chunks_exact(cols) {
        for (d, v) in dst.iter_mut().zip(row) {
            *d += v;
        }
    }
}

/// Backward through time. `dout` is the gradient of the op output (`[B·T + S·B, H]`).
pub fn backward(d: Dims, lens: &[usize], params: &[f32], s: &Stash, dout: &[f32]) -> Grads {
    let Dims { cell, b: nb, t: nt, h } = d;
    let g = d.g();
    assert!(dout.len() == (nb * nt + d.s() * nb) * h);
    let w = &params[..g * h];
    let mut dgx = vec![0.0; nb * nt * g];
    let mut dgh_own = if cell == Cell::Gru { vec![0.0; nb * nt * g] } else { Vec::new() };
    let mut dh = dout[nb * nt * h..(nb * nt + nb) * h].to_vec();
    let mut dc = if cell == Cell::Lstm { dout[(nb * nt + nb) * h..].to_vec() } else { Vec::new() };
    let mut dnext = vec![0.0; nb * h];
    // For LSTM and RNN the gradient w.r.t. h·W_hhᵀ equals the one w.r.t. xw (one buffer).
    let dgx_p = ptr(&mut dgx);
    let dgh_p = if cell == Cell::Gru { ptr(&mut dgh_own) } else { dgx_p };
    for t in (0..nt).rev() {
        let ctx = Bwd {
            d,
            t,
            lens,
            s,
            dout,
            dh: &dh,
            dc: P(dc.as_mut_ptr()),
            dnext: P(dnext.as_mut_ptr()),
            dgx: dgx_p,
            dgh: dgh_p,
        };
        for_rows(nb, g, |rows| bwd_step(&ctx, rows));
        // dh_{t−1} += dgh_t · W_hh
        unsafe {
            gemm(
                nb,
                h,
                g,
                dnext.as_mut_ptr(),
                h,
                true,
                Mat { ptr: dgh_p.0.add(t * g), rs: nt * g, cs: 1 },
                Mat { ptr: w.as_ptr(), rs: h, cs: 1 },
            );
        }
        std::mem::swap(&mut dh, &mut dnext);
    }
    let dgh: &[f32] = if cell == Cell::Gru { &dgh_own } else { &dgx };
    let mut dparams = vec![0.0; g * h + 2 * g];
    // dW_hh = Σ_{b,t} dgh[b,t]ᵀ · h_{t−1}[b]: one [G·H, B·T] × [B·T, H] GEMM.
    unsafe {
        gemm(
            g,
            h,
            nb * nt,
            dparams.as_mut_ptr(),
            h,
            false,
            Mat { ptr: dgh.as_ptr(), rs: 1, cs: g },
            Mat { ptr: s.hprev.as_ptr(), rs: h, cs: 1 },
        );
    }
    let (_, db) = dparams.split_at_mut(g * h);
    let (db_hh, db_ih) = db.split_at_mut(g);
    col_sums(dgh, g, db_hh);
    col_sums(&dgx, g, db_ih);
    dh.extend_from_slice(&dc);
    Grads { dxw: dgx, dparams, dstate0: dh }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_err(f: impl Fn(f32) -> f32, r: impl Fn(f64) -> f64) -> (f64, f64) {
        let (mut abs, mut rel) = (0f64, 0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4 * (1.0 + (i as f32).abs() * 1e-4); // dense near 0, out to ~±420
            let (a, e) = (f(x) as f64, r(x as f64));
            abs = abs.max((a - e).abs());
            if e.abs() > 1e-30 {
                rel = rel.max(((a - e) / e).abs());
            }
        }
        (abs, rel)
    }

    #[test]
    fn activations_are_accurate() {
        let (abs, rel) = max_err(tanh, f64::tanh);
        assert!(abs < 3e-7 && rel < 1e-6, "tanh abs {abs:e} rel {rel:e}");
        let (abs, _) = max_err(sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
        assert!(abs < 3e-7, "sigmoid abs {abs:e}");
        let (_, rel) = max_err(|x| exp(x.clamp(-80.0, 80.0)), |x| x.clamp(-80.0, 80.0).exp());
        assert!(rel < 1e-6, "exp rel {rel:e}");
    }
}
