//! Tau decay modes, their branching fractions, and the decay of a polarized τ⁻ at rest.
//!
//! Branching fractions (PDG / Pythia 8, the table), in percent:
//! e νν 17.73, μ νν 17.31, π ν 10.8 + K ν 0.7 (the kaon generated as a pion), π π⁰ ν 25.4,
//! π 2π⁰ ν 9.25, 3π ν 9.26, 3π π⁰ ν 4.6, other 4.95 (the remainder, generated as π⁻ 3π⁰ ν).
//!
//! Everything here is a τ⁻ with spin density (1 + P σ_z)/2, i.e. polarization P along +z; the
//! production stage rotates +z onto the tau's flight direction and takes τ⁺ as the CP conjugate.
//! Because every decay distribution is linear in P, decaying with P is the same as drawing the
//! helicity ±1 with probabilities (1 ± P)/2.

use super::fourvec::{random_direction, two_body_p, Rot, P4};
use super::hadronic::{pions, sample_linear_cos, Channel, CurrentModel};
use super::resonance::{M_E, M_MU, M_PI, M_TAU};
use crate::rng::Rng;
use crate::tau::format::DecayMode;
use std::sync::OnceLock;

/// A particle of the generated (unsmeared) final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Species {
    PiCharged,
    Pi0,
    Electron,
    Muon,
    Neutrino,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Product {
    pub p4: P4,
    pub species: Species,
    pub charge: i8,
}

/// (mode, branching fraction in percent), in the order of `DecayMode::ALL`.
pub const BRANCHING_PERCENT: [(DecayMode, f64); 8] = [
    (DecayMode::OneProng0Pi0, 11.5),
    (DecayMode::OneProng1Pi0, 25.4),
    (DecayMode::OneProng2Pi0, 9.25),
    (DecayMode::ThreeProng0Pi0, 9.26),
    (DecayMode::ThreeProng1Pi0, 4.6),
    (DecayMode::Electron, 17.73),
    (DecayMode::Muon, 17.31),
    (DecayMode::Other, 4.95),
];

/// The channels that need tables (built once per process, ~0.5 s, then shared by all threads).
pub struct Decayer {
    rho: Channel,
    a1_neutral: Channel,
    a1_charged: Channel,
    three_prong_pi0: Channel,
    other: Channel,
}

impl Decayer {
    pub fn get() -> &'static Decayer {
        static D: OnceLock<Decayer> = OnceLock::new();
        D.get_or_init(|| {
            use Species::{Pi0, PiCharged as Pi};
            Decayer {
                rho: Channel::new(pions(&[(Pi, -1), (Pi0, 0)]), CurrentModel::Rho),
                // q₃ (the last) is the odd pion of the a1 current.
                a1_neutral: Channel::new(pions(&[(Pi0, 0), (Pi0, 0), (Pi, -1)]), CurrentModel::A1),
                a1_charged: Channel::new(pions(&[(Pi, -1), (Pi, -1), (Pi, 1)]), CurrentModel::A1),
                three_prong_pi0: Channel::new(pions(&[(Pi, -1), (Pi, -1), (Pi, 1), (Pi0, 0)]), CurrentModel::ChargeWeighted),
                other: Channel::new(pions(&[(Pi, -1), (Pi0, 0), (Pi0, 0), (Pi0, 0)]), CurrentModel::ChargeWeighted),
            }
        })
    }

    /// A τ⁻ in `mode` decayed at rest with polarization `p` along +z: visible particles first,
    /// neutrinos last. Four-momentum sums to (m_τ, 0, 0, 0).
    pub fn decay_at_rest(&self, mode: DecayMode, p: f64, rng: &mut Rng) -> Vec<Product> {
        match mode {
            DecayMode::OneProng0Pi0 => pi_nu(p, rng),
            DecayMode::OneProng1Pi0 => self.rho.sample(p, rng),
            DecayMode::OneProng2Pi0 => self.a1_neutral.sample(p, rng),
            DecayMode::ThreeProng0Pi0 => self.a1_charged.sample(p, rng),
            DecayMode::ThreeProng1Pi0 => self.three_prong_pi0.sample(p, rng),
            DecayMode::Other => self.other.sample(p, rng),
            DecayMode::Electron => leptonic(Species::Electron, M_E, p, rng),
            DecayMode::Muon => leptonic(Species::Muon, M_MU, p, rng),
        }
    }
}

/// τ⁻ → π⁻ ν: dΓ/dcos θ ∝ 1 + P cos θ, θ the pion angle to the spin.
fn pi_nu(p: f64, rng: &mut Rng) -> Vec<Product> {
    let q = two_body_p(M_TAU, M_PI, 0.0);
    let d = oriented(sample_linear_cos(p, rng), rng);
    vec![
        Product { p4: P4::from_p3_m([q * d[0], q * d[1], q * d[2]], M_PI), species: Species::PiCharged, charge: -1 },
        Product { p4: P4::new(q, -q * d[0], -q * d[1], -q * d[2]), species: Species::Neutrino, charge: 0 },
    ]
}

/// τ⁻ → ℓ⁻ ν̄_ℓ ν_τ with the V−A (Michel ρ = 3/4, η = 0, ξ = 1, δ = 3/4) spectrum of the charged
/// lepton in the massless-lepton form (e.g. PDG review "Muon decay parameters", Fetscher & Gerber):
///   d²Γ/dx dcos θ ∝ x² [(3 − 2x) + P cos θ (1 − 2x)],   x = E_ℓ / E_max, E_max = (m_τ² + m_ℓ²)/2m_τ.
/// The lepton mass enters only through the kinematics (x ≥ m_ℓ/E_max, |p| = √(E² − m²)); the
/// O(m_ℓ/m_τ) spectral corrections (≤ 6% at the μ threshold, negligible above x ≈ 0.2) are neglected.
/// The νν̄ pair is decayed isotropically in its rest frame: both are invisible, only their sum matters.
fn leptonic(species: Species, m: f64, p: f64, rng: &mut Rng) -> Vec<Product> {
    let e_max = (M_TAU * M_TAU + m * m) / (2.0 * M_TAU);
    let x_min = m / e_max;
    let x = loop {
        // x²(3 − 2x) ≤ 1 on [0, 1].
        let x = rng.range(x_min, 1.0);
        if rng.uniform() < x * x * (3.0 - 2.0 * x) {
            break x;
        }
    };
    let c = sample_linear_cos(p * (1.0 - 2.0 * x) / (3.0 - 2.0 * x), rng);
    let e = x * e_max;
    let pl = (e * e - m * m).max(0.0).sqrt();
    let d = oriented(c, rng);
    let lepton = P4::new(e, pl * d[0], pl * d[1], pl * d[2]);
    let pair = P4::at_rest(M_TAU) - lepton;
    let m_pair = pair.mass();
    let k = m_pair / 2.0;
    let dn = random_direction(rng);
    let nu1 = P4::new(k, k * dn[0], k * dn[1], k * dn[2]);
    let nu2 = P4::new(k, -k * dn[0], -k * dn[1], -k * dn[2]);
    let (nu1, nu2) = if m_pair > 1e-9 {
        (nu1.boost_from_rest_of(&pair, m_pair), nu2.boost_from_rest_of(&pair, m_pair))
    } else {
        // At the endpoint the pair is massless and collinear: split it evenly.
        (pair.scale(0.5), pair.scale(0.5))
    };
    vec![
        Product { p4: lepton, species, charge: -1 },
        Product { p4: nu1, species: Species::Neutrino, charge: 0 },
        Product { p4: nu2, species: Species::Neutrino, charge: 0 },
    ]
}

/// A unit vector at polar angle acos(c) to +z, azimuth uniform.
fn oriented(c: f64, rng: &mut Rng) -> [f64; 3] {
    let s = (1.0 - c * c).max(0.0).sqrt();
    let (sp, cp) = (std::f64::consts::TAU * rng.uniform()).sin_cos();
    [s * cp, s * sp, c]
}

/// Draws a mode with probability ∝ `weights` (percent, zero for modes not selected).
pub fn sample_mode(weights: &[(DecayMode, f64)], rng: &mut Rng) -> DecayMode {
    let total: f64 = weights.iter().map(|w| w.1).sum();
    let mut u = rng.uniform() * total;
    for &(mode, w) in weights {
        if u < w {
            return mode;
        }
        u -= w;
    }
    weights.iter().rev().find(|w| w.1 > 0.0).map(|w| w.0).unwrap_or(DecayMode::OneProng0Pi0)
}

/// π⁰ → γγ, isotropic in the π⁰ rest frame.
pub fn pi0_to_photons(pi0: &P4, rng: &mut Rng) -> [P4; 2] {
    let m = super::resonance::M_PI0;
    let k = m / 2.0;
    let d = random_direction(rng);
    let g1 = P4::new(k, k * d[0], k * d[1], k * d[2]);
    let g2 = P4::new(k, -k * d[0], -k * d[1], -k * d[2]);
    [g1.boost_from_rest_of(pi0, m), g2.boost_from_rest_of(pi0, m)]
}

/// Rotates a rest-frame decay so that its +z (the spin axis) points along `axis`.
pub fn align(products: &mut [Product], axis: [f64; 3]) {
    let r = Rot::z_to(axis);
    for p in products {
        p.p4 = p.p4.rotated(&r);
    }
}
