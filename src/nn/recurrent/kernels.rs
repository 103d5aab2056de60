//! Raw f32 slice math for the fused recurrent layer (no candle types): fast activations, a GEMM
//! wrapper, and per-cell forward / backward-through-time sweeps over a whole sequence.
//!
//! Layouts are row-major and batch-major like the layer's tensors, so no transposes are needed:
//! - `x`     `[B, T, F]`    input; the projection x·W_ihᵀ for all steps is one GEMM into `acts`,
//! - `acts`  `[B, T, G·H]`  pre-activations, then (in place) gate activations,
//! - `w_hh`  `[G·H, H]`,
//! - `hprev` `[B, T, H]`    the state before step t (`hprev[:, 0] = h0`): the LHS of step t's gate
//!   GEMM (row stride T·H) and, viewed as `[B·T, H]`, of the single dW_hh GEMM after the sweep,
//! - `out`   `[B·T + S·B, H]` outputs (zero past a sequence's length), then final h (and final c).
//!
//! Steps t ≥ len[b] leave b's state as it is: they write no gate gradients and pass dh/dc through.

use super::buffers::Buf;
use super::step_gemm;
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
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // n as an integer, read from the mantissa of `shifted` (no float→int conversion to saturate).
    let ni = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
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

/// A weight used by the per-step products: packed for the AVX-512 kernel when the CPU has it,
/// otherwise a strided view for `gemm`.
enum StepW<'a> {
    Packed(step_gemm::Packed),
    Plain { k: usize, n: usize, w: Mat, _src: std::marker::PhantomData<&'a [f32]> },
}

impl<'a> StepW<'a> {
    /// `Wm[kk, j] = src[kk·s_k + j·s_j]`, `[k, n]`.
    fn new(k: usize, n: usize, src: &'a [f32], s_k: usize, s_j: usize) -> Self {
        if step_gemm::available() {
            StepW::Packed(step_gemm::Packed::new(k, n, src, s_k, s_j))
        } else {
            StepW::Plain { k, n, w: Mat { ptr: src.as_ptr(), rs: s_k, cs: s_j }, _src: std::marker::PhantomData }
        }
    }

    /// `C[b, :] (+)= A[b, :] · Wm` for `b < m` (row strides `a_rs`, `c_rs`).
    unsafe fn mul(&self, m: usize, a: *const f32, a_rs: usize, c: *mut f32, c_rs: usize, acc: bool) {
        self.mul_a(m, Mat { ptr: a, rs: a_rs, cs: 1 }, c, c_rs, acc)
    }

    /// The same with a strided A.
    unsafe fn mul_a(&self, m: usize, a: Mat, c: *mut f32, c_rs: usize, acc: bool) {
        match self {
            StepW::Packed(p) => step_gemm::gemm_packed(m, a.ptr, a.rs, a.cs, p, c, c_rs, acc),
            StepW::Plain { k, n, w, .. } => gemm(m, *n, *k, c, c_rs, acc, a, *w),
        }
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
    pub f: usize,
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
    /// Length of the packed parameter vector W_hh ++ W_ih ++ b_hh ++ b_ih.
    pub fn n_params(&self) -> usize {
        self.g() * (self.h + self.f + 2)
    }
}

/// The packed parameters, split.
struct Params<'a> {
    w_hh: &'a [f32],
    w_ih: &'a [f32],
    b_hh: &'a [f32],
    b_ih: &'a [f32],
}

impl<'a> Params<'a> {
    fn split(d: Dims, p: &'a [f32]) -> Self {
        let (g, h, f) = (d.g(), d.h, d.f);
        assert_eq!(p.len(), d.n_params());
        let (w_hh, rest) = p.split_at(g * h);
        let (w_ih, rest) = rest.split_at(g * f);
        let (b_hh, b_ih) = rest.split_at(g);
        Params { w_hh, w_ih, b_hh, b_ih }
    }
}

/// What the forward sweep keeps for the backward sweep.
pub struct Stash {
    /// State before step t, `[B, T, H]`.
    hprev: Buf,
    /// Gate activations, `[B, T, G·H]`: i,f,g,o (LSTM), r,z,n (GRU), h_t (RNN). It starts as x·W_ihᵀ,
    /// the step GEMM accumulates h·W_hhᵀ into it and the gate pass (adding the biases) overwrites it
    /// in place, so the sweep streams through one buffer.
    acts: Buf,
    /// GRU: W_hn·h_{t−1} + b_hn, `[B, T, H]`.
    ghn: Buf,
    /// LSTM: c before step t, `[B, T, H]`.
    cprev: Buf,
    /// LSTM: tanh(c_t), `[B, T, H]`.
    tanhc: Buf,
}

/// Gradients of the op's three inputs.
pub struct Grads {
    /// `[B, T, F]`
    pub dx: Vec<f32>,
    /// In the packed parameter layout W_hh ++ W_ih ++ b_hh ++ b_ih.
    pub dparams: Vec<f32>,
    /// dh0 `[B·H]` (then dc0 for LSTM).
    pub dstate0: Vec<f32>,
}

// ---------------------------------------------------------------- per-row gate math
//
// One function per cell and direction taking every stream as its own slice argument: Rust marks
// `&mut` / `&` arguments noalias, which survives inlining, so LLVM vectorizes the loops without
// runtime overlap checks (with a dozen raw-pointer streams it gives up and stays scalar).

/// The `N` gate blocks of a `[N·H]` row as exact-length slices.
#[inline(always)]
fn blocks<const N: usize>(row: &[f32], h: usize) -> [&[f32]; N] {
    std::array::from_fn(|k| &row[k * h..][..h])
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_fwd(
    bias: &[f32],
    pi: &mut [f32],
    pf: &mut [f32],
    pg: &mut [f32],
    po: &mut [f32],
    cp: &[f32],
    tc: &mut [f32],
    cn: &mut [f32],
    hn: &mut [f32],
    y: &mut [f32],
) {
    let h = pi.len();
    let [bi, bf, bg, bo] = blocks::<4>(bias, h);
    let (pf, pg, po, cp, tc, cn, hn, y) =
        (&mut pf[..h], &mut pg[..h], &mut po[..h], &cp[..h], &mut tc[..h], &mut cn[..h], &mut hn[..h], &mut y[..h]);
    for j in 0..h {
        let i = sigmoid(pi[j] + bi[j]);
        let f = sigmoid(pf[j] + bf[j]);
        let g = tanh(pg[j] + bg[j]);
        let o = sigmoid(po[j] + bo[j]);
        let c = f * cp[j] + i * g;
        let th = tanh(c);
        let hh = o * th;
        (pi[j], pf[j], pg[j], po[j]) = (i, f, g, o);
        cn[j] = c;
        tc[j] = th;
        hn[j] = hh;
        y[j] = hh;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gru_fwd(
    bias: &[f32],
    bhn: &[f32],
    pr: &mut [f32],
    pz: &mut [f32],
    pn: &mut [f32],
    ghn: &mut [f32],
    hp: &[f32],
    hn_out: &mut [f32],
    y: &mut [f32],
) {
    let h = pr.len();
    let [br, bz, bn] = blocks::<3>(bias, h);
    let (bhn, pz, pn, ghn, hp, hn_out, y) =
        (&bhn[..h], &mut pz[..h], &mut pn[..h], &mut ghn[..h], &hp[..h], &mut hn_out[..h], &mut y[..h]);
    for j in 0..h {
        let r = sigmoid(pr[j] + br[j]);
        let z = sigmoid(pz[j] + bz[j]);
        let hn = ghn[j] + bhn[j];
        let n = tanh(pn[j] + bn[j] + r * hn);
        let hh = n + z * (hp[j] - n);
        (pr[j], pz[j], pn[j], ghn[j]) = (r, z, n, hn);
        hn_out[j] = hh;
        y[j] = hh;
    }
}

#[inline(always)]
fn rnn_fwd(bias: &[f32], p: &mut [f32], hn: &mut [f32], y: &mut [f32]) {
    let h = p.len();
    let (bias, hn, y) = (&bias[..h], &mut hn[..h], &mut y[..h]);
    for j in 0..h {
        let hh = tanh(p[j] + bias[j]);
        p[j] = hh;
        hn[j] = hh;
        y[j] = hh;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_bwd(
    act: &[f32],
    tc: &[f32],
    cp: &[f32],
    dh_in: &[f32],
    dy: &[f32],
    dc: &mut [f32],
    di: &mut [f32],
    df: &mut [f32],
    dg: &mut [f32],
    d_o: &mut [f32],
) {
    let h = tc.len();
    let [ai, af, ag, ao] = blocks::<4>(act, h);
    let (cp, dh_in, dy, dc, di, df, dg, d_o) =
        (&cp[..h], &dh_in[..h], &dy[..h], &mut dc[..h], &mut di[..h], &mut df[..h], &mut dg[..h], &mut d_o[..h]);
    for j in 0..h {
        let (i, f, g, o, th) = (ai[j], af[j], ag[j], ao[j], tc[j]);
        let dh = dh_in[j] + dy[j];
        let dcc = dc[j] + dh * o * (1.0 - th * th);
        d_o[j] = dh * th * o * (1.0 - o);
        di[j] = dcc * g * i * (1.0 - i);
        dg[j] = dcc * i * (1.0 - g * g);
        df[j] = dcc * cp[j] * f * (1.0 - f);
        dc[j] = dcc * f;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gru_bwd(
    act: &[f32],
    ghn: &[f32],
    hp: &[f32],
    dh_in: &[f32],
    dy: &[f32],
    dr_out: &mut [f32],
    dz_out: &mut [f32],
    dn_out: &mut [f32],
    dghn: &mut [f32],
    dnext: &mut [f32],
) {
    let h = ghn.len();
    let [ar, az, an] = blocks::<3>(act, h);
    let (hp, dh_in, dy, dr_out, dz_out, dn_out, dghn, dnext) =
        (&hp[..h], &dh_in[..h], &dy[..h], &mut dr_out[..h], &mut dz_out[..h], &mut dn_out[..h], &mut dghn[..h], &mut dnext[..h]);
    for j in 0..h {
        let (r, z, n, hn) = (ar[j], az[j], an[j], ghn[j]);
        let dh = dh_in[j] + dy[j];
        let dn = dh * (1.0 - z) * (1.0 - n * n);
        dr_out[j] = dn * hn * r * (1.0 - r);
        dz_out[j] = dh * (hp[j] - n) * z * (1.0 - z);
        dn_out[j] = dn;
        dghn[j] = dn * r;
        dnext[j] = dh * z;
    }
}

#[inline(always)]
fn rnn_bwd(act: &[f32], dh_in: &[f32], dy: &[f32], dp: &mut [f32]) {
    let h = act.len();
    let (dh_in, dy, dp) = (&dh_in[..h], &dy[..h], &mut dp[..h]);
    for j in 0..h {
        dp[j] = (dh_in[j] + dy[j]) * (1.0 - act[j] * act[j]);
    }
}

// ---------------------------------------------------------------- forward

struct Fwd<'a> {
    d: Dims,
    t: usize,
    lens: &'a [usize],
    resets: &'a [bool],
    /// Biases added to the pre-activations: b_ih + b_hh, except GRU's n gate (b_in only).
    bias: &'a [f32],
    /// GRU: b_hn, which sits inside r ⊙ (W_hn h + b_hn).
    bhn: &'a [f32],
    hprev: P,
    acts: P,
    ghn: P,
    cprev: P,
    tanhc: P,
    out: P,
}

#[inline(always)]
unsafe fn fwd_rows(c: &Fwd, rows: Range<usize>) {
    let Dims { cell, b: nb, t: nt, h, .. } = c.d;
    let g = c.d.g();
    let t = c.t;
    let last = t + 1 == nt;
    for b in rows {
        let bt = b * nt + t;
        // Step t's new state goes to the next step's `hprev` row, or to the final state.
        let (hn_off, cn_off) = if last { (nb * nt + b, nb * nt + nb + b) } else { (bt + 1, bt + 1) };
        let (hn_buf, cn_buf) = if last { (c.out, c.out) } else { (c.hprev, c.cprev) };
        let hp: &[f32] = c.hprev.at(bt * h, h);
        let hn_out = hn_buf.at(hn_off * h, h);
        if t >= c.lens[b] {
            hn_out.copy_from_slice(hp);
            if cell == Cell::Lstm {
                cn_buf.at(cn_off * h, h).copy_from_slice(c.cprev.at(bt * h, h));
            }
            // outputs past the length stay zero
        } else {
            let y = c.out.at(bt * h, h);
            let p = |k: usize| c.acts.at(bt * g + k * h, h);
            match cell {
                Cell::Lstm => {
                    let (cp, tc, cn) = (c.cprev.at(bt * h, h), c.tanhc.at(bt * h, h), cn_buf.at(cn_off * h, h));
                    lstm_fwd(c.bias, p(0), p(1), p(2), p(3), cp, tc, cn, hn_out, y);
                }
                Cell::Gru => gru_fwd(c.bias, c.bhn, p(0), p(1), p(2), c.ghn.at(bt * h, h), hp, hn_out, y),
                Cell::Rnn => rnn_fwd(c.bias, p(0), hn_out, y),
            }
        }
        if !last && resets_before(c.resets, bt + 1) {
            hn_out.fill(0.0);
            if cell == Cell::Lstm {
                cn_buf.at(cn_off * h, h).fill(0.0);
            }
        }
    }
}

simd_dispatch!(fwd_step, Fwd, fwd_rows);

/// Whether the state is zeroed before step `bt` (`resets` empty: never).
#[inline(always)]
fn resets_before(resets: &[bool], bt: usize) -> bool {
    !resets.is_empty() && resets[bt]
}

/// Runs the whole sequence. `x` `[B, T, F]`; `params` = W_hh ++ W_ih ++ b_hh ++ b_ih; `state0` = h0
/// `[B, H]` (++ c0 for LSTM); `out` is zeroed, `[B·T + S·B, H]`. `resets` is empty or `[B·T]`: true
/// zeroes the state before that step (the stash then holds the zeros, so backward needs no extra case
/// beyond cutting the carried gradient).
pub fn forward(d: Dims, lens: &[usize], resets: &[bool], x: &[f32], params: &[f32], state0: &[f32], out: &mut [f32]) -> Stash {
    let Dims { cell, b: nb, t: nt, f, h } = d;
    let g = d.g();
    let p = Params::split(d, params);
    assert!(lens.len() == nb && x.len() == nb * nt * f);
    assert!(resets.is_empty() || resets.len() == nb * nt);
    assert!(state0.len() == d.s() * nb * h && out.len() == (nb * nt + d.s() * nb) * h);
    let mut bias: Vec<f32> = p.b_ih.iter().zip(p.b_hh).map(|(a, b)| a + b).collect();
    let mut bhn = Vec::new();
    if cell == Cell::Gru {
        bias[2 * h..].copy_from_slice(&p.b_ih[2 * h..]);
        bhn.extend_from_slice(&p.b_hh[2 * h..]);
    }
    let lstm = cell == Cell::Lstm;
    let per_bt = nb * nt * h;
    let mut s = Stash {
        hprev: Buf::take(per_bt),
        acts: Buf::take(nb * nt * g),
        ghn: Buf::take(if cell == Cell::Gru { per_bt } else { 0 }),
        cprev: Buf::take(if lstm { per_bt } else { 0 }),
        tanhc: Buf::take(if lstm { per_bt } else { 0 }),
    };
    // The input projection for all steps: acts = x · W_ihᵀ, one [B·T, F] × [F, G·H] GEMM.
    unsafe { StepW::new(f, g, p.w_ih, 1, f).mul(nb * nt, x.as_ptr(), f, s.acts.as_mut_ptr(), g, false) };
    for b in 0..nb {
        let reset = resets_before(resets, b * nt);
        let init = |dst: &mut [f32], src: &[f32]| if reset { dst.fill(0.0) } else { dst.copy_from_slice(src) };
        init(&mut s.hprev[b * nt * h..][..h], &state0[b * h..][..h]);
        if lstm {
            init(&mut s.cprev[b * nt * h..][..h], &state0[(nb + b) * h..][..h]);
        }
    }
    // Pre-activations += h_{t−1} · W_hhᵀ per step, where W_hhᵀ(k, j) = w_hh[j·H + k]; GRU keeps
    // the n gate's product apart (it is scaled by r).
    let (w_main, w_n) = if cell == Cell::Gru {
        (StepW::new(h, 2 * h, p.w_hh, 1, h), Some(StepW::new(h, h, &p.w_hh[2 * h * h..], 1, h)))
    } else {
        (StepW::new(h, g, p.w_hh, 1, h), None)
    };
    let out_p = P(out.as_mut_ptr());
    for t in 0..nt {
        unsafe {
            let hp = s.hprev.as_ptr().add(t * h);
            w_main.mul(nb, hp, nt * h, s.acts.as_mut_ptr().add(t * g), nt * g, true);
            if let Some(w_n) = &w_n {
                w_n.mul(nb, hp, nt * h, s.ghn.as_mut_ptr().add(t * h), nt * h, false);
            }
        }
        let ctx = Fwd {
            d,
            t,
            lens,
            resets,
            bias: &bias,
            bhn: &bhn,
            hprev: ptr(&mut s.hprev),
            acts: ptr(&mut s.acts),
            ghn: ptr(&mut s.ghn),
            cprev: ptr(&mut s.cprev),
            tanhc: ptr(&mut s.tanhc),
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
    /// Gradient w.r.t. the pre-activations, `[B, T, G·H]` (= w.r.t. x·W_ihᵀ, and w.r.t. h·W_hhᵀ
    /// except for GRU's n gate).
    dgx: P,
    /// GRU: gradient w.r.t. W_hn·h + b_hn, `[B, T, H]`.
    dghn: P,
}

#[inline(always)]
unsafe fn bwd_rows(c: &Bwd, rows: Range<usize>) {
    let Dims { cell, t: nt, h, .. } = c.d;
    let g = c.d.g();
    let t = c.t;
    for b in rows {
        let bt = b * nt + t;
        let dh_in = &c.dh[b * h..][..h];
        let dnext = c.dnext.at(b * h, h);
        let dp = |k: usize| c.dgx.at(bt * g + k * h, h);
        if t >= c.lens[b] {
            // State passed through unchanged: no gate gradient.
            dnext.copy_from_slice(dh_in);
            c.dgx.at(bt * g, g).fill(0.0);
            if cell == Cell::Gru {
                c.dghn.at(bt * h, h).fill(0.0);
            }
            continue;
        }
        let dy = &c.dout[bt * h..][..h];
        let act = &c.s.acts[bt * g..][..g];
        match cell {
            Cell::Lstm => {
                let (tc, cp) = (&c.s.tanhc[bt * h..][..h], &c.s.cprev[bt * h..][..h]);
                lstm_bwd(act, tc, cp, dh_in, dy, c.dc.at(b * h, h), dp(0), dp(1), dp(2), dp(3));
                dnext.fill(0.0);
            }
            Cell::Gru => {
                let (ghn, hp) = (&c.s.ghn[bt * h..][..h], &c.s.hprev[bt * h..][..h]);
                gru_bwd(act, ghn, hp, dh_in, dy, dp(0), dp(1), dp(2), c.dghn.at(bt * h, h), dnext);
            }
            Cell::Rnn => {
                rnn_bwd(act, dh_in, dy, dp(0));
                dnext.fill(0.0);
            }
        }
    }
}

simd_dispatch!(bwd_step, Bwd, bwd_rows);

/// Column sums of a `[rows, cols]` matrix with row stride `rs`, split over threads by column blocks.
fn col_sums(m: &[f32], rows: usize, rs: usize, dst: &mut [f32]) {
    let cols = dst.len();
    let chunk = if rows * cols >= ROWS_PAR_MIN { cols.div_ceil(rayon::current_num_threads()).max(16) } else { cols };
    dst.par_chunks_mut(chunk).enumerate().for_each(|(ci, d)| {
        d.fill(0.0);
        let n = d.len();
        for r in 0..rows {
            for (o, v) in d.iter_mut().zip(&m[r * rs + ci * chunk..][..n]) {
                *o += v;
            }
        }
    });
}

/// Backward through time. `dout` is the gradient of the op output (`[B·T + S·B, H]`).
pub fn backward(d: Dims, lens: &[usize], resets: &[bool], x: &[f32], params: &[f32], s: &Stash, dout: &[f32]) -> Grads {
    let Dims { cell, b: nb, t: nt, f, h } = d;
    let g = d.g();
    let gru = cell == Cell::Gru;
    let p = Params::split(d, params);
    assert!(dout.len() == (nb * nt + d.s() * nb) * h && x.len() == nb * nt * f);
    let mut dgx = Buf::take(nb * nt * g);
    let mut dghn = Buf::take(if gru { nb * nt * h } else { 0 });
    let mut dh = dout[nb * nt * h..(nb * nt + nb) * h].to_vec();
    let mut dc = if cell == Cell::Lstm { dout[(nb * nt + nb) * h..].to_vec() } else { Vec::new() };
    let mut dnext = vec![0.0; nb * h];
    // dh_{t−1} += dgh_t · W_hh per step (GRU: its n-gate part separately, from dghn).
    let (w_main, w_n) = if gru {
        (StepW::new(2 * h, h, p.w_hh, h, 1), Some(StepW::new(h, h, &p.w_hh[2 * h * h..], h, 1)))
    } else {
        (StepW::new(g, h, p.w_hh, h, 1), None)
    };
    for t in (0..nt).rev() {
        let ctx = Bwd {
            d,
            t,
            lens,
            s,
            dout,
            dh: &dh,
            dc: ptr(&mut dc),
            dnext: ptr(&mut dnext),
            dgx: ptr(&mut dgx),
            dghn: ptr(&mut dghn),
        };
        for_rows(nb, g, |rows| bwd_step(&ctx, rows));
        unsafe {
            w_main.mul(nb, dgx.as_ptr().add(t * g), nt * g, dnext.as_mut_ptr(), h, true);
            if let Some(w_n) = &w_n {
                w_n.mul(nb, dghn.as_ptr().add(t * h), nt * h, dnext.as_mut_ptr(), h, true);
            }
        }
        std::mem::swap(&mut dh, &mut dnext);
        // A reset before step t cut the state: nothing flows back past it.
        for b in (0..nb).filter(|&b| resets_before(resets, b * nt + t)) {
            dh[b * h..][..h].fill(0.0);
            if cell == Cell::Lstm {
                dc[b * h..][..h].fill(0.0);
            }
        }
    }
    let mut dparams = vec![0.0; d.n_params()];
    let (dw_hh, rest) = dparams.split_at_mut(g * h);
    let (dw_ih, db) = rest.split_at_mut(g * f);
    let (db_hh, db_ih) = db.split_at_mut(g);
    let bt = nb * nt;
    let dgx_t = Mat { ptr: dgx.as_ptr(), rs: 1, cs: g };
    let mut dx = vec![0.0; bt * f];
    unsafe {
        // dW_hh = Σ_{b,t} dgh[b,t]ᵀ · h_{t−1}[b]: [rows, B·T] × [B·T, H] GEMMs over all steps at once.
        // These read A transposed, which `gemm` packs well (the panel kernel would stride by rows).
        let hprev = Mat { ptr: s.hprev.as_ptr(), rs: h, cs: 1 };
        let rows_x = if gru { 2 * h } else { g };
        gemm(rows_x, h, bt, dw_hh.as_mut_ptr(), h, false, dgx_t, hprev);
        if gru {
            let dghn_t = Mat { ptr: dghn.as_ptr(), rs: 1, cs: h };
            gemm(h, h, bt, dw_hh.as_mut_ptr().add(2 * h * h), h, false, dghn_t, hprev);
        }
        // dW_ih = dgxᵀ · x and dx = dgx · W_ih.
        gemm(g, f, bt, dw_ih.as_mut_ptr(), f, false, dgx_t, Mat { ptr: x.as_ptr(), rs: f, cs: 1 });
        StepW::new(g, f, p.w_ih, f, 1).mul(bt, dgx.as_ptr(), g, dx.as_mut_ptr(), f, false);
    }
    col_sums(&dgx, bt, g, db_ih);
    db_hh.copy_from_slice(db_ih);
    if gru {
        col_sums(&dghn, bt, h, &mut db_hh[2 * h..]);
    }
    dh.extend_from_slice(&dc);
    Grads { dx, dparams, dstate0: dh }
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
