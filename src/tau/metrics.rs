//! Figures of merit of a tau_pt regression on a test sample, from x = r_est / r_true for every tau:
//! response = median(x), resolution = IQR/median of x (the definition `tau::bound` uses), overall,
//! per true decay mode and in bins of true tau pT; and their bootstrap uncertainties, paired across
//! models (every model is resampled on the same events) so differences between models get the
//! small uncertainty of a paired comparison rather than the sum of two.

use crate::rng::Rng;
use crate::tau::format::{DecayMode, Tau};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// Edges of the true-tau-pT bins, GeV; the last bin is open.
pub const PT_EDGES: [f64; 8] = [20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0];

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Figure {
    pub n: usize,
    pub response: f64,
    pub resolution: f64,
    pub q25: f64,
    pub q75: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PtBin {
    pub lo: f64,
    /// `None`: open-ended.
    pub hi: Option<f64>,
    #[serde(flatten)]
    pub figure: Figure,
}

/// The `q`-quantile with linear interpolation between order statistics (as `tau::bound`), by
/// selection rather than a full sort. Reorders `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let frac = pos - lo as f64;
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    a + frac * (b - a)
}

/// Response and resolution of the values `x` (reordered).
pub fn figure(x: &mut [f64]) -> Figure {
    let q25 = quantile(x, 0.25);
    let median = quantile(x, 0.5);
    let q75 = quantile(x, 0.75);
    Figure { n: x.len(), response: median, resolution: (q75 - q25) / median, q25, q75 }
}

#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub overall: Figure,
    pub per_mode: BTreeMap<String, Figure>,
    pub per_pt: Vec<PtBin>,
}

/// `x[i]` = r_est/r_true of `taus[i]`.
pub fn breakdown(x: &[f64], taus: &[Tau]) -> Breakdown {
    let overall = figure(&mut x.to_vec());
    let mut per_mode = BTreeMap::new();
    for m in DecayMode::ALL {
        let mut v: Vec<f64> = x.iter().zip(taus).filter(|(_, t)| t.decay_mode == m).map(|(v, _)| *v).collect();
        if !v.is_empty() {
            per_mode.insert(m.as_str().to_string(), figure(&mut v));
        }
    }
    let mut per_pt = Vec::new();
    for (i, &lo) in PT_EDGES.iter().enumerate() {
        let hi = PT_EDGES.get(i + 1).copied();
        let mut v: Vec<f64> = x.iter().zip(taus).filter(|(_, t)| t.tau_pt >= lo && hi.is_none_or(|h| t.tau_pt < h)).map(|(v, _)| *v).collect();
        if v.len() >= 20 {
            per_pt.push(PtBin { lo, hi, figure: figure(&mut v) });
        }
    }
    Breakdown { overall, per_mode, per_pt }
}

/// Bootstrap standard deviations: of each model's resolution, and of the resolution difference
/// `a − b` for each requested pair, on the same resampled events.
#[derive(Clone, Debug, Serialize)]
pub struct Bootstrap {
    pub replicates: usize,
    pub resolution_err: Vec<f64>,
    /// `(a, b, resolution(a) − resolution(b), its standard deviation)`.
    pub differences: Vec<(usize, usize, f64, f64)>,
}

pub fn bootstrap(x: &[&[f64]], pairs: &[(usize, usize)], replicates: usize, seed: u64) -> Bootstrap {
    let n = x.first().map_or(0, |v| v.len());
    let reps: Vec<Vec<f64>> = (0..replicates as u64)
        .into_par_iter()
        .map(|r| {
            let mut rng = Rng::derive(seed, r);
            let idx: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
            x.iter().map(|v| figure(&mut idx.iter().map(|&i| v[i]).collect::<Vec<_>>()).resolution).collect()
        })
        .collect();
    let std = |f: &dyn Fn(&[f64]) -> f64| {
        let v: Vec<f64> = reps.iter().map(|r| f(r)).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt()
    };
    let resolution_err = (0..x.len()).map(|k| std(&|r| r[k])).collect();
    let differences = pairs
        .iter()
        .map(|&(a, b)| {
            let value = figure(&mut x[a].to_vec()).resolution - figure(&mut x[b].to_vec()).resolution;
            (a, b, value, std(&|r| r[a] - r[b]))
        })
        .collect();
    Bootstrap { replicates, resolution_err, differences }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_a_sorted_interpolation() {
        let mut rng = Rng::new(4);
        let v: Vec<f64> = (0..1001).map(|_| rng.normal()).collect();
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        for q in [0.25, 0.5, 0.75, 0.333] {
            let pos: f64 = q * 1000.0;
            let (lo, f) = (pos.floor() as usize, pos - pos.floor());
            let want = s[lo] + f * (s[lo + 1] - s[lo]);
            assert!((quantile(&mut v.clone(), q) - want).abs() < 1e-12);
        }
        let f = figure(&mut [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!((f.q25, f.response, f.q75), (2.0, 3.0, 4.0));
        assert!((f.resolution - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn paired_differences_are_tighter_than_either_resolution() {
        // b = a with a little extra noise: a large shared part, which pairing cancels.
        let mut rng = Rng::new(5);
        let a: Vec<f64> = (0..20_000).map(|_| 1.0 + 0.15 * rng.normal()).collect();
        let b: Vec<f64> = a.iter().map(|v| v + 0.03 * rng.normal()).collect();
        let bs = bootstrap(&[&a, &b], &[(1, 0)], 100, 1);
        let (_, _, diff, err) = bs.differences[0];
        let unpaired = bs.resolution_err[0].hypot(bs.resolution_err[1]);
        assert!(diff > 0.0 && err < 0.6 * unpaired, "{bs:?}");
        // 0.2 IQR/median at n = 20k: ~1% relative error.
        assert!(bs.resolution_err[0] > 0.001 && bs.resolution_err[0] < 0.005, "{bs:?}");
    }
}
