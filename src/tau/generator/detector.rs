//! The detector: from generated particles to the reconstructed visible particles of the format.
//!
//! `cms` (CMS-like, the parametrisation):
//! - charged tracks (π±, e, μ): |η| < 2.5, lost with probability 1 − `track_efficiency`, pT
//!   smeared with σ(pT)/pT = √(0.01² + (1.5e-4 pT/GeV)²). The smearing is Gaussian in the curvature
//!   1/pT (how a tracker measures), which for σ ≤ 15% is the same as Gaussian in pT in the core
//!   and never gives a negative pT. Direction exact, mass kept.
//! - π⁰ → γγ isotropic; photons with |η| < 2.5; photons closer than ΔR = 0.05 merged into one
//!   massless cluster (energies added, direction of the summed momentum) before measurement; energy
//!   smeared with σ(E) = √((0.008E)² + 0.11² E + 0.40²) GeV and multiplied by `photon_scale`;
//!   clusters measured below 0.5 GeV are lost.
//!
//! `ideal`: the same acceptance (|η| < 2.5), photons resolved one by one, no smearing, no
//! threshold. `photon_scale` and `track_efficiency` apply to both (they are explicit requests).
//! Both: particles ordered by pT, the softest beyond `max_particles` dropped (not merged: merging
//! would change their kind; vis_pt/vis_mass are those of the kept particles).

use super::decays::{pi0_to_photons, Product, Species};
use super::fourvec::{delta_r, P4};
use super::resonance::{M_E, M_MU, M_PI};
use crate::rng::Rng;
use crate::tau::format::{Kind, Particle};

pub const ETA_MAX: f64 = 2.5;
pub const PHOTON_THRESHOLD: f64 = 0.5;
pub const PHOTON_MERGE_DR: f64 = 0.05;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// CMS-like resolutions, photon threshold and merging.
    Cms,
    /// Acceptance only: every visible particle measured exactly.
    Ideal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    pub detector: Detector,
    pub max_particles: usize,
    pub photon_scale: f64,
    pub track_efficiency: f64,
}

pub fn track_resolution(pt: f64) -> f64 {
    (0.01f64.powi(2) + (1.5e-4 * pt).powi(2)).sqrt()
}

pub fn photon_resolution(e: f64) -> f64 {
    ((0.008 * e).powi(2) + 0.11f64.powi(2) * e + 0.40f64.powi(2)).sqrt()
}

/// The visible particles as reconstructed, hardest first (possibly none).
pub fn reconstruct(products: &[Product], cfg: &DetectorConfig, rng: &mut Rng) -> Vec<Particle> {
    let cms = cfg.detector == Detector::Cms;
    let mut out = Vec::with_capacity(8);
    let mut photons: Vec<P4> = Vec::with_capacity(8);
    for p in products {
        let (kind, mass) = match p.species {
            Species::Neutrino => continue,
            Species::Pi0 => {
                photons.extend(pi0_to_photons(&p.p4, rng));
                continue;
            }
            Species::PiCharged => (Kind::Pi, M_PI),
            Species::Electron => (Kind::E, M_E),
            Species::Muon => (Kind::Mu, M_MU),
        };
        let eta = p.p4.eta();
        if eta.abs() >= ETA_MAX || (cfg.track_efficiency < 1.0 && rng.uniform() >= cfg.track_efficiency) {
            continue;
        }
        let mut pt = p.p4.pt();
        if cms {
            pt /= (1.0 + track_resolution(pt) * rng.normal()).abs().max(1e-3);
        }
        out.push(particle(&P4::from_pt_eta_phi_m(pt, eta, p.p4.phi(), mass), p.charge as i32, kind));
    }
    photons.retain(|g| g.eta().abs() < ETA_MAX);
    if cms {
        for g in merge_photons(photons) {
            let e = cfg.photon_scale * (g.e + photon_resolution(g.e) * rng.normal());
            if e >= PHOTON_THRESHOLD {
                out.push(particle(&g.scale(e / g.e), 0, Kind::Gamma));
            }
        }
    } else {
        for g in photons {
            out.push(particle(&g.scale(cfg.photon_scale), 0, Kind::Gamma));
        }
    }
    out.sort_by(|a, b| b.pt.total_cmp(&a.pt));
    out.truncate(cfg.max_particles);
    out
}

/// Greedy clustering, most energetic first: a photon within ΔR < 0.05 of a cluster joins it.
fn merge_photons(mut photons: Vec<P4>) -> Vec<P4> {
    photons.sort_by(|a, b| b.e.total_cmp(&a.e));
    let mut clusters: Vec<P4> = Vec::with_capacity(photons.len());
    for g in photons {
        let (eta, phi) = (g.eta(), g.phi());
        match clusters.iter_mut().find(|c| delta_r(eta, phi, c.eta(), c.phi()) < PHOTON_MERGE_DR) {
            Some(c) => *c = *c + g,
            None => clusters.push(g),
        }
    }
    // A calorimeter cluster is a massless deposit: keep the energy, take the summed direction.
    for c in clusters.iter_mut() {
        let k = c.e / c.p();
        *c = P4::new(c.e, c.px * k, c.py * k, c.pz * k);
    }
    clusters
}

fn particle(p: &P4, charge: i32, kind: Kind) -> Particle {
    Particle { pt: p.pt(), eta: p.eta(), phi: p.phi(), e: p.e, charge, kind }
}

/// The four-momentum of a reconstructed particle.
pub fn p4_of(p: &Particle) -> P4 {
    let (s, c) = p.phi.sin_cos();
    P4::new(p.e, p.pt * c, p.pt * s, p.pt * p.eta.sinh())
}
