//! Tau production: H → ττ, Z → ττ, W → τν from a boson with an exponential pT spectrum and uniform
//! rapidity, or single taus with a log-uniform pT ("flat"). Also the chain of exact boosts that carries
//! a decay from the tau rest frame to the lab.
//!
//! The pT prior is a setting, not physics: the best achievable regression of tau_pt/vis_pt depends
//! on it (a narrow prior is informative), so compare regressions only on the same prior.
//!
//! Helicity frame: P is the tau's spin projection on its direction of flight in the boson rest frame
//! (the frame where the V/A coupling fixes it); for "flat" taus, in the lab. The decay is generated
//! at rest with the spin along +z, +z is rotated onto that direction, then the decay is boosted to
//! the boson frame and on to the lab (never directly, which would differ by a Wigner rotation).
//!
//! Charge and CP: each tau is τ⁻ or τ⁺ with equal probability. A τ⁺ is generated as the CP
//! conjugate of a τ⁻ with the same P (charges flipped): a τ⁺ of helicity +h decays like a τ⁻ of
//! helicity −h, so P here always means the τ⁻ polarization (H: 0, Z: −0.14, W: −1 for W⁺ and W⁻).
//!
//! One tau per event and per line. For H and Z the other tau is not generated, so the ττ spin
//! correlations (irrelevant to a single-tau regression) are absent; the Z angular distribution is
//! taken isotropic in the boson frame, as the issue specifies, and each Z tau gets ⟨P⟩ = −0.14.

use super::decays::Product;
use super::fourvec::{random_direction, two_body_p, unit, P4};
use super::resonance::M_TAU;
use crate::rng::Rng;
use serde::Serialize;

pub const M_H: f64 = 125.0;
pub const M_Z: f64 = 91.1876;
pub const G_Z: f64 = 2.4952;
pub const M_W: f64 = 80.379;
pub const G_W: f64 = 2.085;
pub const P_Z: f64 = -0.14;
/// Boson rapidity range and flat-tau pseudorapidity range.
pub const Y_MAX: f64 = 2.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    /// H(125) → ττ, P = 0.
    H,
    /// Z → ττ, ⟨P⟩ = −0.14.
    Z,
    /// W → τν, P = −1 (one tau per event).
    W,
    /// Single taus, pT log-uniform in [--pt-min, --pt-max], |η| < 2.5, polarization --polarization.
    Flat,
}

impl Process {
    pub fn as_str(self) -> &'static str {
        match self {
            Process::H => "h",
            Process::Z => "z",
            Process::W => "w",
            Process::Flat => "flat",
        }
    }
}

/// The production settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProductionConfig {
    pub process: Process,
    pub boson_pt_mean: f64,
    pub pt_min: f64,
    pub pt_max: f64,
    pub polarization: f64,
}

/// One produced tau.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Produced {
    /// Lab four-momentum.
    pub tau: P4,
    /// −1 for τ⁻, +1 for τ⁺.
    pub charge: i8,
    /// τ⁻-equivalent polarization along the helicity axis.
    pub polarization: f64,
    /// The tau in the boson rest frame (the lab for "flat"), which defines the helicity axis.
    in_frame: P4,
    /// The boson's lab four-momentum and mass ("flat": none).
    boson: Option<(P4, f64)>,
}

pub fn produce(cfg: &ProductionConfig, rng: &mut Rng) -> Produced {
    let charge = if rng.uniform() < 0.5 { -1 } else { 1 };
    if cfg.process == Process::Flat {
        let pt = cfg.pt_min * (cfg.pt_max / cfg.pt_min).powf(rng.uniform());
        let tau = P4::from_pt_eta_phi_m(pt, rng.range(-Y_MAX, Y_MAX), rng.range(-std::f64::consts::PI, std::f64::consts::PI), M_TAU);
        return Produced { tau, charge, polarization: cfg.polarization, in_frame: tau, boson: None };
    }
    let (mass, polarization, partner) = match cfg.process {
        Process::H => (M_H, 0.0, M_TAU),
        Process::Z => (breit_wigner(M_Z, G_Z, rng), P_Z, M_TAU),
        _ => (breit_wigner(M_W, G_W, rng), -1.0, 0.0),
    };
    let pt = rng.exponential(cfg.boson_pt_mean);
    let y = rng.range(-Y_MAX, Y_MAX);
    let phi = rng.range(-std::f64::consts::PI, std::f64::consts::PI);
    let mt = (mass * mass + pt * pt).sqrt();
    let boson = P4::new(mt * y.cosh(), pt * phi.cos(), pt * phi.sin(), mt * y.sinh());
    let p = two_body_p(mass, M_TAU, partner);
    let d = random_direction(rng);
    let in_frame = P4::from_p3_m([p * d[0], p * d[1], p * d[2]], M_TAU);
    let tau = in_frame.boost_from_rest_of(&boson, mass);
    Produced { tau, charge, polarization, in_frame, boson: Some((boson, mass)) }
}

/// Relativistic Breit–Wigner in s with fixed width, 1/((s − M²)² + M²Γ²), truncated to
/// M ± 10Γ; no parton luminosity (its slope over ±10Γ is a percent-level effect on the tau pT).
fn breit_wigner(m: f64, g: f64, rng: &mut Rng) -> f64 {
    let t = |x: f64| ((x * x - m * m) / (m * g)).atan();
    let (lo, hi) = (t(m - 10.0 * g), t(m + 10.0 * g));
    (m * m + m * g * rng.range(lo, hi).tan()).sqrt()
}

/// Carries a τ⁻ decay at rest (spin along +z) to the lab for this tau: rotation onto the helicity
/// axis, boost to the boson frame, boost to the lab, and CP conjugation for a τ⁺.
pub fn to_lab(prod: &Produced, products: &mut [Product]) {
    super::decays::align(products, unit(prod.in_frame.p3()));
    for p in products.iter_mut() {
        let mut v = p.p4.boost_from_rest_of(&prod.in_frame, M_TAU);
        if let Some((boson, m)) = prod.boson {
            v = v.boost_from_rest_of(&boson, m);
        }
        p.p4 = v;
        p.charge *= -prod.charge;
    }
}
