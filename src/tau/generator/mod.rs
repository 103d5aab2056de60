//! `tau::generator`: a seeded hadronic tau-decay Monte Carlo with a CMS-like detector.
//!
//! Stages, one module each: `production` (boson, tau, helicity) → `decays` (mode, decay at rest;
//! `hadronic` and `spin` for the multi-hadron matrix elements, `resonance` for the line shapes) →
//! `detector` (smearing, acceptance) → `format::Tau`. `fourvec` holds the kinematics.
//!
//! Reproducibility: events are generated in chunks of `CHUNK` accepted taus; chunk i draws from
//! `Rng::derive(seed, i)`, so the output depends on the seed only, never on the thread count.

pub mod decays;
pub mod detector;
pub mod fourvec;
pub mod hadronic;
pub mod production;
pub mod resonance;
pub mod spin;

use crate::rng::Rng;
use crate::tau::format::{DecayMode, Tau};
use anyhow::{bail, Result};
use decays::{Decayer, Product, BRANCHING_PERCENT};
pub use detector::{Detector, DetectorConfig};
use fourvec::P4;
pub use production::{Process, ProductionConfig};
use rayon::prelude::*;

/// Accepted taus per chunk (one RNG stream each).
pub const CHUNK: usize = 4096;

/// Everything that defines a sample, except its size and seed.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    pub process: Process,
    /// Mean of the exponential boson pT spectrum, GeV (h, z, w).
    pub boson_pt_mean: f64,
    /// Tau pT range, GeV ("flat" only).
    pub pt_min: f64,
    pub pt_max: f64,
    /// τ⁻ polarization ("flat" only; the bosons fix their own).
    pub polarization: f64,
    /// Decay modes generated, with their relative branching fractions.
    pub modes: Vec<DecayMode>,
    pub detector: Detector,
    /// Selection: visible pT (of the listed particles) at least this, GeV.
    pub vis_pt_min: f64,
    pub max_particles: usize,
    pub photon_scale: f64,
    pub track_efficiency: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            process: Process::H,
            boson_pt_mean: 20.0,
            pt_min: 20.0,
            pt_max: 200.0,
            polarization: 0.0,
            modes: DecayMode::ALL.to_vec(),
            detector: Detector::Cms,
            vis_pt_min: 20.0,
            max_particles: 5,
            photon_scale: 1.0,
            track_efficiency: 1.0,
        }
    }
}

impl GenConfig {
    /// Names the first bad setting and what to do about it.
    pub fn validate(&self) -> Result<()> {
        let finite = [
            ("--boson-pt-mean", self.boson_pt_mean),
            ("--pt-min", self.pt_min),
            ("--pt-max", self.pt_max),
            ("--polarization", self.polarization),
            ("--vis-pt-min", self.vis_pt_min),
            ("--photon-scale", self.photon_scale),
            ("--track-efficiency", self.track_efficiency),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                bail!("{name} must be a finite number, got {v}");
            }
        }
        if self.modes.is_empty() {
            bail!("no decay mode selected: give --modes all, hadronic, leptonic or a comma list");
        }
        if self.boson_pt_mean <= 0.0 {
            bail!("--boson-pt-mean must be positive, got {}", self.boson_pt_mean);
        }
        if self.process == Process::Flat {
            if self.pt_min <= 0.0 {
                bail!("--pt-min must be positive, got {}", self.pt_min);
            }
            if self.pt_min > self.pt_max {
                bail!("--pt-min ({}) is above --pt-max ({}): swap them", self.pt_min, self.pt_max);
            }
            if self.pt_max * 1.5 < self.vis_pt_min {
                bail!("no tau with pT ≤ --pt-max ({}) can pass --vis-pt-min ({}): lower --vis-pt-min", self.pt_max, self.vis_pt_min);
            }
        }
        if self.polarization.abs() > 1.0 {
            bail!("--polarization must be in [-1, 1], got {}", self.polarization);
        }
        if self.vis_pt_min < 0.0 {
            bail!("--vis-pt-min must not be negative, got {}", self.vis_pt_min);
        }
        if self.max_particles == 0 {
            bail!("--max-particles must be at least 1");
        }
        if self.photon_scale <= 0.0 {
            bail!("--photon-scale must be positive, got {}", self.photon_scale);
        }
        if !(self.track_efficiency > 0.0 && self.track_efficiency <= 1.0) {
            bail!("--track-efficiency must be in (0, 1], got {}", self.track_efficiency);
        }
        Ok(())
    }

    fn production(&self) -> ProductionConfig {
        ProductionConfig {
            process: self.process,
            boson_pt_mean: self.boson_pt_mean,
            pt_min: self.pt_min,
            pt_max: self.pt_max,
            polarization: self.polarization,
        }
    }

    fn detector_config(&self) -> DetectorConfig {
        DetectorConfig {
            detector: self.detector,
            max_particles: self.max_particles,
            photon_scale: self.photon_scale,
            track_efficiency: self.track_efficiency,
        }
    }
}

/// Parses `--modes`: `all`, `hadronic`, `leptonic`, or a comma list of mode names.
pub fn parse_modes(s: &str) -> Result<Vec<DecayMode>> {
    let names = || DecayMode::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
    match s.trim() {
        "all" => return Ok(DecayMode::ALL.to_vec()),
        "hadronic" => return Ok(DecayMode::ALL.into_iter().filter(|m| !m.is_leptonic()).collect()),
        "leptonic" => return Ok(DecayMode::ALL.into_iter().filter(|m| m.is_leptonic()).collect()),
        _ => {}
    }
    let mut modes = Vec::new();
    for name in s.split(',').map(str::trim) {
        match DecayMode::parse(name) {
            Some(m) if !modes.contains(&m) => modes.push(m),
            Some(_) => {}
            None => bail!("unknown decay mode '{name}' in --modes: use all, hadronic, leptonic or a comma list of {}", names()),
        }
    }
    Ok(modes)
}

/// One generated tau before the detector: lab four-momenta of every decay product, neutrinos
/// included (charges already those of the generated τ∓).
#[derive(Clone, Debug, PartialEq)]
pub struct TruthEvent {
    pub tau: P4,
    pub charge: i8,
    /// τ⁻-equivalent polarization it was decayed with.
    pub polarization: f64,
    pub mode: DecayMode,
    pub products: Vec<Product>,
}

/// A validated configuration with its decay tables.
pub struct Generator {
    cfg: GenConfig,
    weights: Vec<(DecayMode, f64)>,
    decayer: &'static Decayer,
}

/// One chunk's taus and how many were generated to get them.
pub struct Chunk {
    pub taus: Vec<Tau>,
    pub attempts: usize,
}

impl Generator {
    pub fn new(cfg: &GenConfig) -> Result<Self> {
        cfg.validate()?;
        let weights = BRANCHING_PERCENT.iter().map(|&(m, w)| (m, if cfg.modes.contains(&m) { w } else { 0.0 })).collect();
        Ok(Generator { cfg: cfg.clone(), weights, decayer: Decayer::get() })
    }

    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Produces and decays one tau (no detector, no selection).
    pub fn truth(&self, rng: &mut Rng) -> TruthEvent {
        let prod = production::produce(&self.cfg.production(), rng);
        let mode = decays::sample_mode(&self.weights, rng);
        let mut products = self.decayer.decay_at_rest(mode, prod.polarization, rng);
        production::to_lab(&prod, &mut products);
        TruthEvent { tau: prod.tau, charge: prod.charge, polarization: prod.polarization, mode, products }
    }

    /// The detector and the selection: `None` when nothing is seen or vis_pt < vis_pt_min.
    pub fn reconstruct(&self, ev: &TruthEvent, rng: &mut Rng) -> Option<Tau> {
        let particles = detector::reconstruct(&ev.products, &self.cfg.detector_config(), rng);
        if particles.is_empty() {
            return None;
        }
        let vis = particles.iter().fold(P4::default(), |acc, p| acc + detector::p4_of(p));
        let vis_pt = vis.pt();
        if vis_pt < self.cfg.vis_pt_min || vis_pt <= 0.0 {
            return None;
        }
        Some(Tau {
            particles,
            tau_pt: ev.tau.pt(),
            tau_eta: ev.tau.eta(),
            tau_phi: ev.tau.phi(),
            vis_pt,
            vis_mass: vis.mass(),
            decay_mode: ev.mode,
            process: self.cfg.process.as_str().to_string(),
        })
    }

    /// Chunk `index` of a sample: `count` selected taus from stream `Rng::derive(seed, index)`.
    /// Fails if fewer than 1 in 1000 taus pass the selection (it would never finish).
    pub fn chunk(&self, seed: u64, index: u64, count: usize) -> Result<Chunk> {
        let mut rng = Rng::derive(seed, index);
        let mut taus = Vec::with_capacity(count);
        let mut attempts = 0usize;
        while taus.len() < count {
            attempts += 1;
            let ev = self.truth(&mut rng);
            if let Some(t) = self.reconstruct(&ev, &mut rng) {
                taus.push(t);
            }
            if attempts >= 1_000_000 && taus.len() * 1000 < attempts {
                bail!(
                    "fewer than 1 in 1000 taus pass the selection (--vis-pt-min {} GeV with this process and these modes): lower --vis-pt-min",
                    self.cfg.vis_pt_min
                );
            }
        }
        Ok(Chunk { taus, attempts })
    }
}

/// Sizes of the chunks of a sample of `count` taus.
pub fn chunk_sizes(count: usize) -> impl Iterator<Item = (u64, usize)> {
    (0..count.div_ceil(CHUNK)).map(move |i| (i as u64, CHUNK.min(count - i * CHUNK)))
}

/// `count` selected taus in memory, in parallel; the same as `gen tau-gen` writes for this seed.
pub fn generate(cfg: &GenConfig, count: usize, seed: u64) -> Result<Vec<Tau>> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let g = Generator::new(cfg)?;
    let chunks: Vec<Chunk> = chunk_sizes(count).collect::<Vec<_>>().into_par_iter().map(|(i, n)| g.chunk(seed, i, n)).collect::<Result<_>>()?;
    Ok(chunks.into_iter().flat_map(|c| c.taus).collect())
}
