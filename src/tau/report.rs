//! The study's report: `report.json` (machine-readable), `report.md` (tables), PNG plots
//! (r_est/r_true distributions, resolution and response vs true pT, validation loss) and the
//! printed table.

use crate::fsutil::{atomic_write, atomic_write_json};
use crate::plot::{line_chart, Chart, Series};
use crate::tau::bound::{BoundReport, Resolution};
use crate::tau::metrics::{Breakdown, Figure, PtBin};
use crate::tau::train::TrainResult;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct BoundSummary {
    /// IQR/median from (mode, vis_pt, vis_mass): the target the rnn is held to.
    pub resolution: f64,
    pub from_vis_resolution: f64,
    pub constant_resolution: f64,
    pub per_mode: BTreeMap<String, f64>,
}

impl BoundSummary {
    pub fn new(b: &BoundReport) -> Self {
        let r = |x: &Resolution| x.iqr_over_median;
        BoundSummary {
            resolution: r(&b.best),
            from_vis_resolution: r(&b.from_vis),
            constant_resolution: r(&b.constant),
            per_mode: b.per_mode.iter().map(|m| (m.mode.as_str().to_string(), r(&m.best))).collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub response: f64,
    pub resolution: f64,
    /// Bootstrap standard deviation of `resolution`.
    pub resolution_err: f64,
    pub q25: f64,
    pub q75: f64,
    pub per_mode: BTreeMap<String, Figure>,
    pub per_pt: Vec<PtBin>,
    pub params: usize,
    pub calibration: f64,
    /// Absent when the model was loaded from a checkpoint.
    pub training: Option<TrainResult>,
}

impl ModelReport {
    pub fn new(b: Breakdown, resolution_err: f64, params: usize, calibration: f64, training: Option<TrainResult>) -> Self {
        let o = b.overall;
        ModelReport { response: o.response, resolution: o.resolution, resolution_err, q25: o.q25, q75: o.q75, per_mode: b.per_mode, per_pt: b.per_pt, params, calibration, training }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    pub value: f64,
    pub err: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub n_test: usize,
    /// Where the samples came from (files or generation settings).
    pub samples: serde_json::Value,
    pub bound: BoundSummary,
    pub models: BTreeMap<String, ModelReport>,
    /// Paired-bootstrap resolution differences, e.g. "rnn-jet" (negative: rnn better).
    pub differences: BTreeMap<String, Difference>,
    pub bootstrap_replicates: usize,
    pub seconds: f64,
}

/// Models in the report's display order.
fn ordered(r: &Report) -> Vec<(&str, &ModelReport)> {
    let mut v: Vec<(&str, &ModelReport)> = r.models.iter().map(|(k, m)| (k.as_str(), m)).collect();
    let rank = |k: &str| ["const", "jet", "deepsets", "rnn"].iter().position(|&n| n == k).unwrap_or(9);
    v.sort_by_key(|(k, _)| rank(k));
    v
}

/// The short table printed at the end of a run.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} test taus; resolution = IQR/median of r_est/r_true (± bootstrap)", r.n_test);
    let _ = writeln!(s, "  model       response   resolution        ×bound");
    for (k, m) in ordered(r) {
        let _ = writeln!(s, "  {k:<10} {:8.3}   {:.4} ± {:.4}   {:6.3}", m.response, m.resolution, m.resolution_err, m.resolution / r.bound.resolution);
    }
    let _ = writeln!(s, "  bound      {:>8}   {:.4}            (mode, vis_pt, vis_mass); from (vis_pt, vis_mass) {:.4}", "", r.bound.resolution, r.bound.from_vis_resolution);
    for (k, d) in &r.differences {
        let _ = writeln!(s, "  {k}: {:+.4} ± {:.4}", d.value, d.err);
    }
    s
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let models = ordered(r);
    let _ = writeln!(s, "# tau_pt regression report\n");
    let _ = writeln!(s, "Test sample: {} taus.\n", r.n_test);
    match r.samples.as_object() {
        Some(o) => o.iter().for_each(|(k, v)| {
            let _ = writeln!(s, "- {k}: `{v}`");
        }),
        None => {
            let _ = writeln!(s, "- samples: `{}`", r.samples);
        }
    }
    s.push('\n');
    let _ = writeln!(s, "r = tau_pt / vis_pt; response = median of r_est/r_true; resolution = IQR/median of r_est/r_true.");
    let _ = writeln!(s, "Uncertainties: standard deviation over {} bootstrap resamplings of the test sample (paired for differences).\n", r.bootstrap_replicates);
    let _ = writeln!(s, "| model | params | best epoch | response | resolution | × bound |\n|---|---:|---:|---:|---:|---:|");
    for (k, m) in &models {
        let epoch = m.training.as_ref().map_or("-".into(), |t| t.best_epoch.to_string());
        let _ = writeln!(s, "| {k} | {} | {epoch} | {:.3} | {:.4} ± {:.4} | {:.3} |", m.params, m.response, m.resolution, m.resolution_err, m.resolution / r.bound.resolution);
    }
    let _ = writeln!(s, "| bound (mode, vis_pt, vis_mass) | | | | {:.4} | 1 |", r.bound.resolution);
    let _ = writeln!(s, "| bound (vis_pt, vis_mass) | | | | {:.4} | {:.3} |", r.bound.from_vis_resolution, r.bound.from_vis_resolution / r.bound.resolution);
    let _ = writeln!(s, "| constant (binned-median method) | | | | {:.4} | {:.3} |\n", r.bound.constant_resolution, r.bound.constant_resolution / r.bound.resolution);
    if !r.differences.is_empty() {
        let _ = writeln!(s, "| difference | Δ resolution |\n|---|---:|");
        for (k, d) in &r.differences {
            let _ = writeln!(s, "| {k} | {:+.4} ± {:.4} |", d.value, d.err);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Resolution per true decay mode\n");
    let modes: Vec<&String> = r.bound.per_mode.keys().collect();
    let _ = writeln!(s, "| model | {} |\n|---|{}", modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" | "), "---:|".repeat(modes.len()));
    for (k, m) in &models {
        let cells: Vec<String> = modes.iter().map(|md| m.per_mode.get(*md).map_or("-".into(), |f| format!("{:.3} ({:.3})", f.resolution, f.response))).collect();
        let _ = writeln!(s, "| {k} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s, "| bound | {} |\n", modes.iter().map(|m| format!("{:.3}", r.bound.per_mode[*m])).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "Cells: resolution (response).\n\n## Resolution in bins of true tau pT\n");
    let _ = writeln!(s, "Binned in the true pT, every estimator built from observables is pulled towards the bulk of the prior");
    let _ = writeln!(s, "(a tau with a low true pT is estimated too high, a high one too low): the response per true-pT bin");
    let _ = writeln!(s, "shows the prior, not a miscalibration. Cells: resolution (response).\n");
    if let Some((_, first)) = models.first() {
        let bins: Vec<String> = first.per_pt.iter().map(|b| b.hi.map_or(format!("≥{}", b.lo), |h| format!("{}–{}", b.lo, h))).collect();
        let _ = writeln!(s, "| model | {} |\n|---|{}", bins.join(" | "), "---:|".repeat(bins.len()));
        for (k, m) in &models {
            let cells: Vec<String> = m.per_pt.iter().map(|b| format!("{:.3} ({:.3})", b.figure.resolution, b.figure.response)).collect();
            let _ = writeln!(s, "| {k} | {} |", cells.join(" | "));
        }
        let _ = writeln!(s, "| taus | {} |", first.per_pt.iter().map(|b| b.figure.n.to_string()).collect::<Vec<_>>().join(" | "));
    }
    let _ = writeln!(s, "\nPlots: `response.png` (r_est/r_true), `resolution_vs_pt.png`, `response_vs_pt.png`, `val_loss.png` (training runs).");
    s
}

/// Writes report.json, report.md and the plots into `dir`. `ratios`: (model, r_est/r_true per tau).
pub fn write(dir: &Path, r: &Report, ratios: &[(&str, &[f64])]) -> Result<()> {
    atomic_write_json(&dir.join("report.json"), r)?;
    atomic_write(&dir.join("report.md"), markdown(r).as_bytes())?;
    let hist: Vec<Series> = ratios.iter().map(|(k, x)| Series { name: k.to_string(), points: step_histogram(x, 0.3, 2.0, 85) }).collect();
    let chart = |title, y_label| Chart { title, x_label: "true tau pT [GeV] (bin centre)", y_label, log_x: false };
    line_chart(&dir.join("response.png"), &Chart { title: "r_est / r_true on the test sample", x_label: "r_est / r_true", y_label: "fraction of taus per bin", log_x: false }, &hist)?;
    let per_pt = |f: fn(&Figure) -> f64| -> Vec<Series> {
        ordered(r).into_iter().map(|(k, m)| Series { name: k.to_string(), points: m.per_pt.iter().map(|b| (centre(b), f(&b.figure))).collect() }).collect()
    };
    let mut res = per_pt(|f| f.resolution);
    if let Some(xs) = res.first().map(|s| s.points.iter().map(|p| p.0).collect::<Vec<_>>()) {
        res.push(Series { name: "bound (all pT)".into(), points: xs.iter().map(|&x| (x, r.bound.resolution)).collect() });
    }
    line_chart(&dir.join("resolution_vs_pt.png"), &chart("Resolution (IQR/median of r_est/r_true) vs true pT", "resolution"), &res)?;
    line_chart(&dir.join("response_vs_pt.png"), &chart("Response (median of r_est/r_true) vs true pT", "response"), &per_pt(|f| f.response))?;
    let losses: Vec<Series> = ordered(r)
        .into_iter()
        .filter_map(|(k, m)| m.training.as_ref().map(|t| Series { name: k.to_string(), points: t.history.iter().map(|e| (e.epoch as f64, e.val_loss)).collect() }))
        .collect();
    if !losses.is_empty() {
        line_chart(&dir.join("val_loss.png"), &Chart { title: "Validation Huber loss", x_label: "epoch", y_label: "loss (standardised)", log_x: false }, &losses)?;
    }
    Ok(())
}

/// Bin centre for plotting; the open last bin is drawn at 1.25× its edge.
fn centre(b: &PtBin) -> f64 {
    b.hi.map_or(1.25 * b.lo, |h| 0.5 * (b.lo + h))
}

/// A normalised histogram drawn as a step line: two points per bin edge.
fn step_histogram(x: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let mut counts = vec![0usize; bins];
    let w = (hi - lo) / bins as f64;
    for &v in x {
        if v >= lo && v < hi {
            counts[((v - lo) / w) as usize] += 1;
        }
    }
    let n = x.len().max(1) as f64;
    let mut pts = vec![(lo, 0.0)];
    for (i, &c) in counts.iter().enumerate() {
        let y = c as f64 / n;
        pts.push((lo + i as f64 * w, y));
        pts.push((lo + (i + 1) as f64 * w, y));
    }
    pts.push((hi, 0.0));
    pts
}

/// The model card for a checkpoint directory: what it is, how it was trained, the report's numbers.
pub fn model_card(r: &Report, checkpoint: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# tau_pt regression models (gen tau-rnn)\n");
    let _ = writeln!(s, "Estimates r = tau_pt / vis_pt of a hadronic tau decay from its reconstructed visible particles.");
    let _ = writeln!(s, "Inputs per particle (hardest first): log pT, Δη and Δφ to the visible axis, log E, pT/vis_pt, charge, one-hot kind (pi, gamma, e, mu);");
    let _ = writeln!(s, "per tau: log vis_pt, vis_mass. Target: log r, Huber loss. Feature scaling (fitted on the training sample) in `scaling.json`.\n");
    let _ = writeln!(s, "Models: `const` (one number), `jet` (MLP on log vis_pt, vis_mass), `deepsets` (per-particle MLP, sum and mean pooling, MLP),");
    let _ = writeln!(s, "`rnn` (the shared recurrent layer over the particles; its state after each tau's last particle and log vis_pt, vis_mass feed an MLP).");
    let _ = writeln!(s, "Each estimate is multiplied by `calibration` (1 / median r_est/r_true on the validation sample).\n");
    let _ = writeln!(s, "Use: `gen tau-rnn --checkpoint {checkpoint} --test FILE` (a `gen tau-gen` JSONL file).\n");
    let _ = writeln!(s, "Valid for: the prior it was trained on (see `config.json` → `trained_on`); the learned regression depends on the production prior and the detector.\n");
    s.push_str(&markdown(r).replacen("# tau_pt regression report", "## Test-sample report", 1));
    s
}
