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
use super::resonance::{bw_a1, bw_rho, Envelope, M_PI, M_PI0, M_TAU};
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
    model: CurrentModel,
    envelope: Envelope,
}

/// One unpolarized final state in the tau rest frame.
struct FinalState {
    nu: P4,
    hadrons: Vec<P4>,
    pol: Polarimeter,
}

impl Channel {
    pub fn new(hadrons: Vec<(Species, i8, f64)>, model: CurrentModel) -> Self {
        let sum: f64 = hadrons.iter().map(|h| h.2).sum();
        let (lo, hi) = (sum * sum, M_TAU * M_TAU);
        let mut ch = Channel { hadrons, model, envelope: Envelope::scan(lo, hi, 1, 1, 1.0, |_, _| 1.0) };
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
        let masses: Vec<f64> = self.hadrons.iter().map(|h| h.2).collect();
        let (ps_weight, in_q) = n_body(rs, &masses, rng);
        // τ → ν Q: p_ν = (m² − s)/2m; dΦ₂ ∝ p_ν / m.
        let p_nu = (M_TAU * M_TAU - s) / (2.0 * M_TAU);
        let q = P4::new((p_nu * p_nu + s).sqrt(), 0.0, 0.0, p_nu);
        let nu = P4::new(p_nu, 0.0, 0.0, -p_nu);
        let hadrons: Vec<P4> = in_q.iter().map(|h| h.boost_from_rest_of(&q, rs)).collect();
        let j = self.current(&hadrons, &q, s);
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
/// simplex, needed because s varies from event to event) and the momenta.
pub fn n_body(m: f64, masses: &[f64], rng: &mut Rng) -> (f64, Vec<P4>) {
    let n = masses.len();
    let sum: f64 = masses.iter().sum();
    let free = m - sum;
    let mut r: Vec<f64> = (0..n.saturating_sub(2)).map(|_| rng.uniform()).collect();
    r.sort_by(f64::total_cmp);
    // mu[k] = mass of the subsystem of the first k + 1 particles.
    let mut mu = Vec::with_capacity(n);
    let mut acc = 0.0;
    for (k, &mk) in masses.iter().enumerate() {
        acc += mk;
        mu.push(if k == 0 {
            mk
        } else if k == n - 1 {
            m
        } else {
            acc + r[k - 1] * free
        });
    }
    let mut weight = free.powi(n as i32 - 2) / m;
    let mut group = vec![P4::at_rest(masses[0])];
    for k in 1..n {
        let p = two_body_p(mu[k], mu[k - 1], masses[k]);
        weight *= p;
        let d = random_direction(rng);
        let sub = P4::from_p3_m([p * d[0], p * d[1], p * d[2]], mu[k - 1]);
        for g in group.iter_mut() {
            *g = g.boost_from_rest_of(&sub, mu[k - 1]);
        }
        group.push(P4::from_p3_m([-p * d[0], -p * d[1], -p * d[2]], masses[k]));
    }
    (weight, group)
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
        let (w, ps) = n_body(1.5, &masses, &mut rng);
        assert!(w > 0.0);
        let tot = ps.iter().fold(P4::default(), |a, &b| a + b);
        assert!((tot.e - 1.5).abs() < 1e-12 && tot.p() < 1e-12);
        for (p, m) in ps.iter().zip(masses) {
            assert!((p.mass() - m).abs() < 1e-9);
        }
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
