//! Multi-hadron modes (ρ → ππ⁰, a1 → 3π, 4π): the full final state by phase space in the tau rest
//! frame, weighted by the exact polarized V−A matrix element of `spin.rs`.
//!
//! Sampling, in two exact steps:
//! 1. The unpolarized final state, by rejection: the hadronic mass² s from a piecewise-constant
//!    envelope (`resonance::Envelope`), the hadrons by flat n-body phase space in their rest frame
//!    (sequential two-body decays, James 1968 / GENBOD), the neutrino opposite; accepted with
//!    weight |M|²_unpol × dΦ / envelope. The resonance masses therefore come out of Breit–Wigners
//!    weighted by the tau-decay phase space and matrix element, not from a bare Breit–Wigner.
//! 2. The spin: the polarized rate is |M|²_unpol (1 + P ŝ·h⃗) with |h⃗| = 1, and the unpolarized rate
//!    is invariant under rotations of the whole final state. So the final state is rotated
//!    rigidly so that h⃗ points along d̂, with cos∠(d̂, ŝ) drawn from (1 + P cos)/2 and the rotation
//!    about d̂ uniform. This is the same distribution as accept/reject with (1 + P ŝ·h⃗)/2, at full
//!    efficiency, and it keeps every correlation (interference between ρ helicities included).
//!
//! Currents (τ⁻; X_⊥ = X − Q (Q·X)/Q², Q the total hadronic momentum):
//! - ρ:  J = BW_ρ(s) (q_π⁻ − q_π⁰)_⊥  (Kühn & Santamaria 1990).
//! - a1: J = BW_a1(s) [BW_ρ(s₁₃) (q₁ − q₃)_⊥ + BW_ρ(s₂₃) (q₂ − q₃)_⊥], q₃ the odd pion (π⁺ in
//!   π⁻π⁻π⁺, π⁻ in π⁻π⁰π⁰): a1 → ρπ in S-wave, symmetrised over the identical pions
//!   (Kühn & Santamaria 1990 without their small ρ′ term).
//! - 4π (π⁻π⁻π⁺π⁰, and π⁻π⁰π⁰π⁰ for "other"): no resonance model; the simplest vector current,
//!   the charge-weighted momentum J = (Σ cᵢ qᵢ)_⊥, times phase space. Documented as approximate.

use super::decays::{Product, Species};
use super::fourvec::{random_direction, two_body_p, Rot, P4};
use super::resonance::{bw_a1, bw_rho, Envelope, G_RHO, M_PI, M_PI0, M_RHO, M_TAU};
use super::spin::{self, polarimeter, Current, Polarimeter, C};
use crate::rng::Rng;
use std::sync::atomic::{AtomicU64, Ordering};

/// Weights found above their envelope (would bias the sample if frequent); tests check it stays 0.
pub static ENVELOPE_OVERFLOWS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrentModel {
    Rho,
    A1,
    ChargeWeighted,
}

/// One hadronic channel: its hadrons (τ⁻ charges) and current, with its envelope in s.
pub struct Channel {
    hadrons: Vec<(Species, i8, f64)>,
    masses: [f64; MAX_HADRONS],
    model: CurrentModel,
    envelope: Envelope,
}

/// The most hadrons of any channel (fixed-size arrays keep the sampling loop allocation-free).
pub const MAX_HADRONS: usize = 4;

/// One unpolarized final state in the tau rest frame (the first `n` hadrons are used).
struct FinalState {
    nu: P4,
    hadrons: [P4; MAX_HADRONS],
    pol: Polarimeter,
}

impl Channel {
    pub fn new(hadrons: Vec<(Species, i8, f64)>, model: CurrentModel) -> Self {
        let sum: f64 = hadrons.iter().map(|h| h.2).sum();
        let (lo, hi) = (sum * sum, M_TAU * M_TAU);
        assert!((2..=MAX_HADRONS).contains(&hadrons.len()));
        let mut masses = [0.0; MAX_HADRONS];
        for (m, h) in masses.iter_mut().zip(&hadrons) {
            *m = h.2;
        }
        let mut ch = Channel { hadrons, masses, model, envelope: Envelope::scan(lo, hi, 1, 1, 1.0, |_, _| 1.0) };
        // More scan points for more phase-space dimensions: the ρ bands of the a1 Dalitz plot are
        // the narrowest structures the envelope has to cover.
        let (bins, samples, safety) = match ch.hadrons.len() {
            2 => (300, 400, 1.25),
            _ => (150, 1500, 1.6),
        };
        ch.envelope = Envelope::scan(lo, hi, bins, samples, safety, |s, rng| ch.final_state(s, rng).0);
        ch
    }

    /// Draws a τ⁻ decay at rest with polarization `p` along +z; returns hadrons then the ν_τ.
    pub fn sample(&self, p: f64, rng: &mut Rng) -> Vec<Product> {
        let fs = loop {
            let (s, bound) = self.envelope.propose(rng);
            let (w, fs) = self.final_state(s, rng);
            if w > bound {
                ENVELOPE_OVERFLOWS.fetch_add(1, Ordering::Relaxed);
            }
            if rng.uniform() * bound < w {
                break fs;
            }
        };
        // Step 2: rotate h⃗ onto d̂ (cos θ_d ~ (1 + P cos)/2 about ŝ = +z), uniform about d̂.
        let cos_d = sample_linear_cos(p, rng);
        let sin_d = (1.0 - cos_d * cos_d).max(0.0).sqrt();
        let (sp, cp) = (std::f64::consts::TAU * rng.uniform()).sin_cos();
        let d = [sin_d * cp, sin_d * sp, cos_d];
        let rot = Rot::z_to(fs.pol.h)
            .transpose()
            .then(&Rot::about_z(std::f64::consts::TAU * rng.uniform()))
            .then(&Rot::z_to(d));
        let mut out: Vec<Product> = fs
            .hadrons
            .iter()
            .zip(&self.hadrons)
            .map(|(q, &(species, charge, _))| Product { p4: q.rotated(&rot), species, charge })
            .collect();
        out.push(Product { p4: fs.nu.rotated(&rot), species: Species::Neutrino, charge: 0 });
        out
    }

    /// A flat-phase-space final state at hadronic mass² `s` and its weight |M|²_unpol × dΦ/ds
    /// (constants dropped): ν along −z, the hadrons isotropic about their own rest frame.
    fn final_state(&self, s: f64, rng: &mut Rng) -> (f64, FinalState) {
        let rs = s.sqrt();
        let n = self.hadrons.len();
        let mut hadrons = [P4::default(); MAX_HADRONS];
        let ps_weight = match self.model {
            CurrentModel::A1 => rho_pi_phase_space(rs, &self.masses[..3], rng, &mut hadrons),
            _ => n_body(rs, &self.masses[..n], rng, &mut hadrons),
        };
        // τ → ν Q: p_ν = (m² − s)/2m; dΦ₂ ∝ p_ν / m.
        let p_nu = (M_TAU * M_TAU - s) / (2.0 * M_TAU);
        let q = P4::new((p_nu * p_nu + s).sqrt(), 0.0, 0.0, p_nu);
        let nu = P4::new(p_nu, 0.0, 0.0, -p_nu);
        for h in hadrons[..n].iter_mut() {
            *h = h.boost_from_rest_of(&q, rs);
        }
        let j = self.current(&hadrons[..n], &q, s);
        let pol = polarimeter(&nu, &j);
        (pol.weight * p_nu * ps_weight, FinalState { nu, hadrons, pol })
    }

    fn current(&self, h: &[P4], q: &P4, s: f64) -> Current {
        let perp = |v: P4| v - q.scale(q.dot(&v) / s);
        match self.model {
            CurrentModel::Rho => spin::times(bw_rho(s, h[0].mass(), h[1].mass()), &perp(h[0] - h[1])),
            CurrentModel::A1 => {
                let (m_odd, m_pair) = (self.hadrons[2].2, self.hadrons[0].2);
                let b13 = bw_rho((h[0] + h[2]).mass2(), m_pair, m_odd);
                let b23 = bw_rho((h[1] + h[2]).mass2(), m_pair, m_odd);
                let j = spin::add(&spin::times(b13, &perp(h[0] - h[2])), &spin::times(b23, &perp(h[1] - h[2])));
                let a = bw_a1(s);
                j.map(|c| c.mul(a))
            }
            CurrentModel::ChargeWeighted => {
                let v = h.iter().zip(&self.hadrons).fold(P4::default(), |acc, (p, had)| acc + p.scale(had.1 as f64));
                spin::times(C::new(1.0, 0.0), &perp(v))
            }
        }
    }
}

/// Flat n-body phase space of `masses` at total mass `m` in its rest frame, by sequential isotropic
/// two-body decays with the intermediate masses uniform and ordered (James, CERN 68-15). Returns the
/// weight dΦₙ ∝ (1/m) ∏ p*ₖ × (m − Σmᵢ)^(n−2) (the last factor is the volume of the intermediate-mass
/// simplex, needed because s varies from event to event); the momenta go to `out[..n]`.
pub fn n_body(m: f64, masses: &[f64], rng: &mut Rng, out: &mut [P4]) -> f64 {
    let n = masses.len();
    let sum: f64 = masses.iter().sum();
    let free = m - sum;
    let mut r = [0.0; MAX_HADRONS];
    for x in r[..n - 2].iter_mut() {
        *x = rng.uniform();
    }
    r[..n - 2].sort_by(f64::total_cmp);
    // mu[k] = mass of the subsystem of the first k + 1 particles.
    let mut mu = [0.0; MAX_HADRONS];
    let mut acc = 0.0;
    for (k, &mk) in masses.iter().enumerate() {
        acc += mk;
        mu[k] = if k == 0 {
            mk
        } else if k == n - 1 {
            m
        } else {
            acc + r[k - 1] * free
        };
    }
    let mut weight = free.powi(n as i32 - 2) / m;
    out[0] = P4::at_rest(masses[0]);
    for k in 1..n {
        let p = two_body_p(mu[k], mu[k - 1], masses[k]);
        weight *= p;
        let d = random_direction(rng);
        let sub = P4::from_p3_m([p * d[0], p * d[1], p * d[2]], mu[k - 1]);
        for g in out[..k].iter_mut() {
            *g = g.boost_from_rest_of(&sub, mu[k - 1]);
        }
        out[k] = P4::from_p3_m([-p * d[0], -p * d[1], -p * d[2]], masses[k]);
    }
    weight
}

/// Three-body phase space sampled where the a1 current lives: one of the two (qᵢ, q₃) pairs (the odd
/// pion last) gets its mass² from a Cauchy (fixed-width ρ Breit–Wigner) on its kinematic range, the
/// rest by isotropic two-body decays. Returns the flat-phase-space density over the proposal
/// density of the two-pairing mixture, in the normalisation of `n_body`, so that the weight and
/// the distribution are exactly those of flat phase space, only sampled ~5× more efficiently than
/// uniformly (the ρ bands of the Dalitz plot hold most of the rate).
pub fn rho_pi_phase_space(m: f64, masses: &[f64], rng: &mut Rng, out: &mut [P4]) -> f64 {
    let (m3, g) = (masses[2], M_RHO * G_RHO);
    // Cauchy on [lo, hi] in s: density c(s) and the sampler.
    let range = |i: usize| {
        let (lo, hi) = ((masses[i] + m3).powi(2), (m - masses[1 - i]).powi(2));
        let t = |x: f64| ((x - M_RHO * M_RHO) / g).atan();
        (t(lo), t(hi))
    };
    let i = (rng.uniform() < 0.5) as usize;
    let (tlo, thi) = range(i);
    let sp = M_RHO * M_RHO + g * rng.range(tlo, thi).tan();
    let mp = sp.sqrt();
    let pa = two_body_p(m, mp, masses[1 - i]);
    let pb = two_body_p(mp, masses[i], m3);
    let (d1, d2) = (random_direction(rng), random_direction(rng));
    let pair = P4::from_p3_m([pa * d1[0], pa * d1[1], pa * d1[2]], mp);
    out[1 - i] = P4::from_p3_m([-pa * d1[0], -pa * d1[1], -pa * d1[2]], masses[1 - i]);
    out[i] = P4::from_p3_m([pb * d2[0], pb * d2[1], pb * d2[2]], masses[i]).boost_from_rest_of(&pair, mp);
    out[2] = P4::from_p3_m([-pb * d2[0], -pb * d2[1], -pb * d2[2]], m3).boost_from_rest_of(&pair, mp);
    // Proposal density per unit flat phase space (dΦ₃ ∝ (1/m) p*_a p*_b dm_pair dΩ dΩ, dm = ds/2m).
    let q: f64 = (0..2)
        .map(|k| {
            let s_k = (out[k] + out[2]).mass2();
            let m_k = s_k.max(0.0).sqrt();
            let (a, b) = (two_body_p(m, m_k, masses[1 - k]), two_body_p(m_k, masses[k], m3));
            let (tlo, thi) = range(k);
            let c = 1.0 / (g * (1.0 + ((s_k - M_RHO * M_RHO) / g).powi(2)) * (thi - tlo));
            0.5 * c * 2.0 * m_k * m / (a * b)
        })
        .sum();
    if q.is_finite() && q > 0.0 {
        1.0 / q
    } else {
        0.0
    }
}

/// cos θ drawn from (1 + a cos θ)/2 on [−1, 1], |a| ≤ 1, by inverting the CDF (the root written in
/// the form that stays accurate as a → 0).
pub fn sample_linear_cos(a: f64, rng: &mut Rng) -> f64 {
    let u = rng.uniform();
    let disc = (1.0 - a) * (1.0 - a) + 4.0 * a * u;
    ((4.0 * u - 2.0 + a) / (1.0 + disc.max(0.0).sqrt())).clamp(-1.0, 1.0)
}

/// The hadrons of each multi-hadron channel (τ⁻ charges).
pub fn pions(spec: &[(Species, i8)]) -> Vec<(Species, i8, f64)> {
    spec.iter().map(|&(s, c)| (s, c, if s == Species::Pi0 { M_PI0 } else { M_PI })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_body_conserves_momentum_and_masses() {
        let mut rng = Rng::new(5);
        let masses = [M_PI, M_PI, M_PI, M_PI0];
        let mut ps = [P4::default(); MAX_HADRONS];
        let w = n_body(1.5, &masses, &mut rng, &mut ps);
        assert!(w > 0.0);
        let tot = ps.iter().fold(P4::default(), |a, &b| a + b);
        assert!((tot.e - 1.5).abs() < 1e-12 && tot.p() < 1e-12);
        for (p, m) in ps.iter().zip(masses) {
            assert!((p.mass() - m).abs() < 1e-9);
        }
    }

    #[test]
    fn rho_pi_phase_space_is_flat_phase_space_reweighted() {
        // Weighted means of a Dalitz variable and the total volume agree with plain n_body.
        let masses = [M_PI, M_PI, M_PI];
        let (mut rng, n) = (Rng::new(3), 400_000);
        let mut ps = [P4::default(); MAX_HADRONS];
        let mut stats = |f: &mut dyn FnMut(&mut Rng, &mut [P4]) -> f64| {
            let (mut w, mut ws) = (0.0, 0.0);
            for _ in 0..n {
                let x = f(&mut rng, &mut ps);
                w += x;
                ws += x * (ps[0] + ps[2]).mass2();
            }
            (w / n as f64, ws / w)
        };
        let (v1, s1) = stats(&mut |r, o| n_body(1.4, &masses, r, o));
        let (v2, s2) = stats(&mut |r, o| rho_pi_phase_space(1.4, &masses, r, o));
        assert!((v1 / v2 - 1.0).abs() < 0.02, "volume {v1} vs {v2}");
        assert!((s1 / s2 - 1.0).abs() < 0.01, "<s13> {s1} vs {s2}");
    }

    #[test]
    fn linear_cos_has_the_right_mean() {
        let mut rng = Rng::new(9);
        for a in [-1.0, -0.3, 0.0, 0.7, 1.0] {
            let n = 200_000;
            let mean: f64 = (0..n).map(|_| sample_linear_cos(a, &mut rng)).sum::<f64>() / n as f64;
            // E[cos] = a/3, σ of the mean ≤ 1/√(3n).
            assert!((mean - a / 3.0).abs() < 4.0 / (3.0 * n as f64).sqrt(), "a = {a}: {mean}");
        }
    }
}
