//! From taus to tensors: per-particle features, the scaling fitted on the training sample, and
//! length-aware batches.
//!
//! Per particle (hardest first): log pT, Δη and Δφ to the visible axis (the direction of the sum of
//! the listed particles), log E, pT / vis_pt, charge, one-hot kind. Per tau: log vis_pt and vis_mass
//! (the `jet` model's inputs, also given to the heads of `deepsets` and `rnn`). Target:
//! log(tau_pt / vis_pt). Every feature and the target are standardised with the mean and standard
//! deviation of the training sample; the scaling travels with the checkpoint so a test file is
//! encoded exactly as the training file was.

use crate::tau::format::{Kind, Tau};
use crate::tau::generator::fourvec::P4;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Names of the per-particle features, in column order. A checkpoint stores them and refuses to
/// run on a `gen` that computes a different list.
pub const PARTICLE_FEATURES: [&str; 10] = ["log_pt", "deta", "dphi", "log_e", "pt_over_vis_pt", "charge", "is_pi", "is_gamma", "is_e", "is_mu"];
/// Names of the per-tau features.
pub const GLOBAL_FEATURES: [&str; 2] = ["log_vis_pt", "vis_mass"];
pub const NF: usize = PARTICLE_FEATURES.len();
pub const NG: usize = GLOBAL_FEATURES.len();
const KINDS: [Kind; 4] = [Kind::Pi, Kind::Gamma, Kind::E, Kind::Mu];

/// Raw (unscaled) features of one tau: its particles ordered by pT, hardest first.
pub fn raw_features(t: &Tau) -> Result<(Vec<[f64; NF]>, [f64; NG]), String> {
    if t.particles.is_empty() {
        return Err("tau has no particles".into());
    }
    if !(t.vis_pt > 0.0 && t.vis_mass >= 0.0 && t.vis_mass.is_finite()) {
        return Err(format!("vis_pt must be positive and vis_mass non-negative (got {}, {})", t.vis_pt, t.vis_mass));
    }
    let mut vis = P4::default();
    for (i, p) in t.particles.iter().enumerate() {
        if !(p.pt > 0.0 && p.e > 0.0 && p.pt.is_finite() && p.e.is_finite() && p.eta.is_finite() && p.phi.is_finite()) {
            return Err(format!("particles[{i}] needs finite eta, phi and positive pt, e"));
        }
        let (s, c) = p.phi.sin_cos();
        vis = vis + P4::new(p.e, p.pt * c, p.pt * s, p.pt * p.eta.sinh());
    }
    let (axis_eta, axis_phi) = (vis.eta(), vis.phi());
    let mut order: Vec<usize> = (0..t.particles.len()).collect();
    // Stable sort: equal pT keeps file order, so encoding is deterministic.
    order.sort_by(|&a, &b| t.particles[b].pt.total_cmp(&t.particles[a].pt));
    let rows = order
        .into_iter()
        .map(|i| {
            let p = &t.particles[i];
            let mut f = [0.0; NF];
            f[0] = p.pt.ln();
            f[1] = p.eta - axis_eta;
            f[2] = wrap_phi(p.phi - axis_phi);
            f[3] = p.e.ln();
            f[4] = p.pt / t.vis_pt;
            f[5] = p.charge as f64;
            f[6 + KINDS.iter().position(|&k| k == p.kind).unwrap()] = 1.0;
            f
        })
        .collect();
    Ok((rows, [t.vis_pt.ln(), t.vis_mass]))
}

fn wrap_phi(d: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    d - tau * ((d + std::f64::consts::PI) / tau).floor()
}

/// The regression target log(tau_pt / vis_pt).
pub fn target(t: &Tau) -> f64 {
    t.ratio().ln()
}

/// Means and standard deviations, fitted on the training sample. f32, so that they survive the
/// JSON round trip bit for bit and a loaded checkpoint encodes exactly as the trained one did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    pub particle_features: Vec<String>,
    pub particle_mean: Vec<f32>,
    pub particle_std: Vec<f32>,
    pub global_features: Vec<String>,
    pub global_mean: Vec<f32>,
    pub global_std: Vec<f32>,
    pub target: String,
    pub target_mean: f32,
    pub target_std: f32,
}

#[derive(Default)]
struct Moments {
    n: f64,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Moments {
    fn add(&mut self, x: &[f64]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; x.len()];
            self.sq = vec![0.0; x.len()];
        }
        self.n += 1.0;
        for (i, v) in x.iter().enumerate() {
            self.sum[i] += v;
            self.sq[i] += v * v;
        }
    }

    /// Mean and std; a constant feature gets std 1 so it standardises to 0 rather than NaN.
    fn finish(&self) -> (Vec<f32>, Vec<f32>) {
        let mean: Vec<f64> = self.sum.iter().map(|s| s / self.n).collect();
        let std = self.sq.iter().zip(&mean).map(|(q, m)| (q / self.n - m * m).max(0.0).sqrt()).map(|s| if s > 1e-6 { s as f32 } else { 1.0 }).collect();
        (mean.into_iter().map(|m| m as f32).collect(), std)
    }
}

impl Scaling {
    pub fn fit(taus: &[Tau]) -> Result<Scaling> {
        let (mut p, mut g, mut y) = (Moments::default(), Moments::default(), Moments::default());
        for (i, t) in taus.iter().enumerate() {
            let (rows, glob) = raw_features(t).map_err(|e| anyhow::anyhow!("training tau {}: {e}", i + 1))?;
            rows.iter().for_each(|r| p.add(r));
            g.add(&glob);
            y.add(&[target(t)]);
        }
        if taus.is_empty() {
            bail!("no training taus to fit the feature scaling on");
        }
        let (particle_mean, particle_std) = p.finish();
        let (global_mean, global_std) = g.finish();
        let (ym, ys) = y.finish();
        Ok(Scaling {
            particle_features: PARTICLE_FEATURES.iter().map(|s| s.to_string()).collect(),
            particle_mean,
            particle_std,
            global_features: GLOBAL_FEATURES.iter().map(|s| s.to_string()).collect(),
            global_mean,
            global_std,
            target: "log(tau_pt/vis_pt)".into(),
            target_mean: ym[0],
            target_std: ys[0],
        })
    }

    /// A scaling saved by another version of the features cannot encode our columns.
    pub fn check_compatible(&self) -> Result<()> {
        let ours: Vec<String> = PARTICLE_FEATURES.iter().map(|s| s.to_string()).collect();
        let globals: Vec<String> = GLOBAL_FEATURES.iter().map(|s| s.to_string()).collect();
        if self.particle_features != ours || self.global_features != globals || self.target != "log(tau_pt/vis_pt)" {
            bail!(
                "the checkpoint's feature set [{}; {}] differs from this gen's [{}; {}]: retrain it with this gen",
                self.particle_features.join(","),
                self.global_features.join(","),
                ours.join(","),
                globals.join(",")
            );
        }
        let lens = [self.particle_mean.len(), self.particle_std.len(), self.global_mean.len(), self.global_std.len()];
        if lens != [NF, NF, NG, NG] {
            bail!("the checkpoint's scaling has {lens:?} values, the feature set needs [{NF}, {NF}, {NG}, {NG}]: the checkpoint is corrupt");
        }
        let all = self.particle_mean.iter().chain(&self.particle_std).chain(&self.global_mean).chain(&self.global_std);
        if !all.chain([&self.target_mean, &self.target_std]).all(|v| v.is_finite()) || self.target_std <= 0.0 {
            bail!("the checkpoint's scaling holds non-finite values: the checkpoint is corrupt");
        }
        Ok(())
    }
}

/// A whole sample, encoded and standardised; padded to the longest tau with zeros.
pub struct Encoded {
    pub n: usize,
    pub t_max: usize,
    /// `[n, t_max, NF]`, row-major.
    pub x: Vec<f32>,
    pub lengths: Vec<usize>,
    /// `[n, NG]`
    pub globals: Vec<f32>,
    /// Standardised target.
    pub y: Vec<f32>,
}

impl Encoded {
    /// `what` names the sample in errors ("test file x.jsonl").
    pub fn new(taus: &[Tau], s: &Scaling, what: &str) -> Result<Encoded> {
        if taus.is_empty() {
            bail!("{what}: no taus");
        }
        let t_max = taus.iter().map(|t| t.particles.len()).max().unwrap_or(0);
        let n = taus.len();
        let mut x = vec![0f32; n * t_max * NF];
        let mut lengths = Vec::with_capacity(n);
        let mut globals = Vec::with_capacity(n * NG);
        let mut y = Vec::with_capacity(n);
        for (i, t) in taus.iter().enumerate() {
            let (rows, g) = raw_features(t).map_err(|e| anyhow::anyhow!("{what}: tau {}: {e}", i + 1))?;
            for (j, r) in rows.iter().enumerate() {
                let at = (i * t_max + j) * NF;
                for k in 0..NF {
                    x[at + k] = ((r[k] - s.particle_mean[k] as f64) / s.particle_std[k] as f64) as f32;
                }
            }
            lengths.push(rows.len());
            for k in 0..NG {
                globals.push(((g[k] - s.global_mean[k] as f64) / s.global_std[k] as f64) as f32);
            }
            y.push(((target(t) - s.target_mean as f64) / s.target_std as f64) as f32);
        }
        Ok(Encoded { n, t_max, x, lengths, globals, y })
    }

    /// The taus at `idx` as tensors, padded only to the longest of them.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<Batch> {
        let t = idx.iter().map(|&i| self.lengths[i]).max().unwrap_or(1);
        let b = idx.len();
        let mut x = vec![0f32; b * t * NF];
        let mut mask = vec![0f32; b * t];
        let mut globals = Vec::with_capacity(b * NG);
        let mut y = Vec::with_capacity(b);
        for (r, &i) in idx.iter().enumerate() {
            let len = self.lengths[i];
            let src = i * self.t_max * NF;
            x[r * t * NF..(r * t + len) * NF].copy_from_slice(&self.x[src..src + len * NF]);
            mask[r * t..r * t + len].fill(1.0);
            globals.extend_from_slice(&self.globals[i * NG..(i + 1) * NG]);
            y.push(self.y[i]);
        }
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, NF), device)?,
            mask: Tensor::from_vec(mask, (b, t, 1), device)?,
            lengths: idx.iter().map(|&i| self.lengths[i]).collect(),
            globals: Tensor::from_vec(globals, (b, NG), device)?,
            y: Tensor::from_vec(y, b, device)?,
        })
    }
}

/// One batch: `x [B, T, NF]` zero past each length, `mask [B, T, 1]` (1 = a particle),
/// `globals [B, NG]`, standardised target `y [B]`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub x: Tensor,
    pub mask: Tensor,
    pub lengths: Vec<usize>,
    pub globals: Tensor,
    pub y: Tensor,
}

impl Batch {
    /// The same batch padded to `t` steps with `fill` past every length (for the invariance tests).
    pub fn padded(&self, t: usize, fill: f32) -> Result<Batch> {
        let (b, t0, f) = self.x.dims3()?;
        let extra = t.saturating_sub(t0);
        let pad = |v: f32, cols: usize| Tensor::full(v, (b, extra, cols), self.x.device());
        let x = Tensor::cat(&[&self.x, &pad(fill, f)?], 1)?;
        let mask = Tensor::cat(&[&self.mask, &pad(0.0, 1)?], 1)?;
        // Also scribble over the existing padding inside t0.
        let keep = mask.broadcast_as(x.shape())?.ne(0f32)?;
        let x = keep.where_cond(&x, &Tensor::full(fill, x.shape(), x.device())?)?;
        Ok(Batch { x, mask, lengths: self.lengths.clone(), globals: self.globals.clone(), y: self.y.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tau::format::{DecayMode, Particle};

    pub fn rho(pt1: f64, pt2: f64) -> Tau {
        let a = Particle { pt: pt1, eta: 0.5, phi: 3.1, e: pt1 * 0.5f64.cosh(), charge: -1, kind: Kind::Pi };
        let b = Particle { pt: pt2, eta: 0.52, phi: -3.12, e: pt2 * 0.52f64.cosh(), charge: 0, kind: Kind::Gamma };
        let vis = crate::tau::generator::detector::p4_of(&a) + crate::tau::generator::detector::p4_of(&b);
        Tau {
            particles: vec![b, a],
            tau_pt: 1.4 * vis.pt(),
            tau_eta: 0.5,
            tau_phi: 3.1,
            vis_pt: vis.pt(),
            vis_mass: vis.mass(),
            decay_mode: DecayMode::OneProng1Pi0,
            process: "test".into(),
        }
    }

    #[test]
    fn features_are_ordered_by_pt_and_relative_to_the_visible_axis() {
        let t = rho(30.0, 10.0);
        let (rows, g) = raw_features(&t).unwrap();
        assert_eq!(rows.len(), 2);
        // Hardest first although the file lists the photon first.
        assert!((rows[0][0] - 30f64.ln()).abs() < 1e-12);
        assert_eq!(rows[0][5], -1.0);
        assert_eq!(&rows[0][6..], &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(&rows[1][6..], &[0.0, 1.0, 0.0, 0.0]);
        // Δφ wraps across ±π: both particles lie within 0.05 of the axis.
        assert!(rows.iter().all(|r| r[2].abs() < 0.05 && r[1].abs() < 0.05), "{rows:?}");
        // pT-weighted Δφ around the axis nearly cancels.
        assert!((rows[0][2] * 30.0 + rows[1][2] * 10.0).abs() < 0.01);
        let frac: f64 = rows.iter().map(|r| r[4]).sum();
        assert!(frac > 0.99 && frac < 1.01);
        assert!((g[0] - t.vis_pt.ln()).abs() < 1e-12);
        assert!((target(&t) - 1.4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn scaling_standardises_and_batches_are_padded_with_zeros() {
        let taus: Vec<Tau> = (0..50).map(|i| rho(20.0 + i as f64, 5.0 + (i % 7) as f64)).collect();
        let mut taus = taus;
        taus[3].particles.truncate(1);
        let s = Scaling::fit(&taus).unwrap();
        s.check_compatible().unwrap();
        let e = Encoded::new(&taus, &s, "test").unwrap();
        let mean: f64 = e.globals.iter().step_by(NG).map(|&v| v as f64).sum::<f64>() / 50.0;
        assert!(mean.abs() < 1e-5);
        let b = e.batch(&[3, 4], &Device::Cpu).unwrap();
        assert_eq!(b.x.dims(), &[2, 2, NF]);
        assert_eq!(b.lengths, vec![1, 2]);
        let pad: Vec<f32> = b.x.get(0).unwrap().get(1).unwrap().to_vec1().unwrap();
        assert!(pad.iter().all(|&v| v == 0.0));
        let bad = Tau { vis_pt: 0.0, ..taus[0].clone() };
        assert!(Encoded::new(&[bad], &s, "test file f").err().unwrap().to_string().starts_with("test file f: tau 1:"));
    }
}
