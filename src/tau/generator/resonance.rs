//! Resonance line shapes (Kühn & Santamaria, Z. Phys. C48 (1990) 445) and the piecewise-constant
//! envelope used to sample a one-dimensional variable (the hadronic mass²) exactly by rejection.

use super::fourvec::two_body_p;
use super::spin::C;
use crate::rng::Rng;

pub const M_TAU: f64 = 1.77686;
pub const M_PI: f64 = 0.13957;
pub const M_PI0: f64 = 0.134977;
pub const M_E: f64 = 0.000511;
pub const M_MU: f64 = 0.105658;
pub const M_RHO: f64 = 0.7755;
pub const G_RHO: f64 = 0.149;
pub const M_A1: f64 = 1.23;
pub const G_A1: f64 = 0.42;

/// ρ(770) Breit–Wigner normalised to 1 at s = 0, with the P-wave energy-dependent width
/// Γ(s) = Γ₀ (m₀/√s) (p(s)/p(m₀²))³ (Kühn & Santamaria eq. 10), `m1`, `m2` the two pion masses.
pub fn bw_rho(s: f64, m1: f64, m2: f64) -> C {
    let rs = s.sqrt();
    let p = two_body_p(rs, m1, m2);
    let p0 = two_body_p(M_RHO, m1, m2);
    let width = G_RHO * (M_RHO / rs) * (p / p0).powi(3);
    let m2r = M_RHO * M_RHO;
    C::new(m2r, 0.0).mul(C::new(m2r - s, -rs * width).inv())
}

/// The a1(1260) running width Γ(s) = Γ₀ g(s)/g(m₀²) with Kühn & Santamaria's fit (their eq. 14) to
/// the three-pion phase space integral g (GeV², charged pion mass).
fn a1_g(s: f64) -> f64 {
    let thr = 9.0 * M_PI * M_PI;
    if s <= thr {
        return 0.0;
    }
    if s < (M_RHO + M_PI) * (M_RHO + M_PI) {
        let x = s - thr;
        4.1 * x.powi(3) * (1.0 - 3.3 * x + 5.8 * x * x)
    } else {
        s * (1.623 + 10.38 / s - 9.32 / (s * s) + 0.65 / (s * s * s))
    }
}

pub fn bw_a1(s: f64) -> C {
    let width = G_A1 * a1_g(s) / a1_g(M_A1 * M_A1);
    let m2 = M_A1 * M_A1;
    C::new(m2, 0.0).mul(C::new(m2 - s, -s.sqrt() * width).inv())
}

/// A piecewise-constant upper bound g(s) ≥ f(s, x) over [lo, hi], for sampling s ∝ ∫f dx by rejection:
/// pick a bin with probability ∝ its bound × width, s uniform inside, then accept with f/bound.
/// Exact as long as the bound holds; it is built from a fixed-seed scan of f (see `Envelope::scan`)
/// with a safety factor, and the generator counts any weight that exceeds it (`overflows`).
#[derive(Clone, Debug)]
pub struct Envelope {
    lo: f64,
    width: f64,
    bound: Vec<f64>,
    cumulative: Vec<f64>,
}

impl Envelope {
    /// Scans `samples` points per bin (s uniform in the bin, the rest drawn by `weight` itself from
    /// its rng) and takes the largest weight seen in the bin and its neighbours, times `safety`.
    pub fn scan(lo: f64, hi: f64, bins: usize, samples: usize, safety: f64, mut weight: impl FnMut(f64, &mut Rng) -> f64) -> Self {
        let width = (hi - lo) / bins as f64;
        let mut rng = Rng::new(0x7a0_5ca9);
        let max: Vec<f64> = (0..bins)
            .map(|b| {
                (0..samples)
                    .map(|_| weight(lo + width * (b as f64 + rng.uniform()), &mut rng))
                    .fold(0.0, f64::max)
            })
            .collect();
        let bound: Vec<f64> = (0..bins)
            .map(|b| {
                let m = max[b.saturating_sub(1)].max(max[b]).max(max[(b + 1).min(bins - 1)]);
                m * safety
            })
            .collect();
        let mut cumulative = Vec::with_capacity(bins);
        let mut acc = 0.0;
        for &g in &bound {
            acc += g;
            cumulative.push(acc);
        }
        Self { lo, width, bound, cumulative }
    }

    /// Draws s from the envelope; returns s and the bound there.
    pub fn propose(&self, rng: &mut Rng) -> (f64, f64) {
        let total = *self.cumulative.last().unwrap();
        let u = rng.uniform() * total;
        let b = self.cumulative.partition_point(|&c| c <= u).min(self.bound.len() - 1);
        (self.lo + self.width * (b as f64 + rng.uniform()), self.bound[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shapes_peak_at_their_masses() {
        let at = |s: f64| bw_rho(s, M_PI, M_PI0).norm2();
        assert!(at(M_RHO * M_RHO) > at(0.6 * 0.6) && at(M_RHO * M_RHO) > at(0.9 * 0.9));
        // On the pole the propagator is m₀²/(−i m₀ Γ₀) = i m₀/Γ₀.
        let on = bw_rho(M_RHO * M_RHO, M_PI, M_PI0);
        assert!(on.re.abs() < 1e-9 && (on.im - M_RHO / G_RHO).abs() < 1e-9);
        let a = bw_a1(M_A1 * M_A1);
        assert!(a.re.abs() < 1e-9 && (a.im - M_A1 / G_A1).abs() < 1e-9);
        // The published fit is continuous to ~5% where its two pieces meet (as in the paper).
        let s0 = (M_RHO + M_PI) * (M_RHO + M_PI);
        assert!((a1_g(s0 - 1e-9) - a1_g(s0 + 1e-9)).abs() < 0.06 * a1_g(s0));
    }
}
