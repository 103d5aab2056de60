//! The study: fit the scaling on the training sample, train every requested model the same way,
//! calibrate each on validation, evaluate all on the test sample next to the bound, and report.
//! The command line only gathers the samples and the options.

use crate::tau::bound::bound;
use crate::tau::checkpoint::{self, Trained};
use crate::tau::dataset::{Encoded, Scaling};
use crate::tau::format::Tau;
use crate::tau::metrics::{bootstrap, breakdown, figure};
use crate::tau::model::{Arch, ModelSpec};
use crate::tau::report::{self, BoundSummary, Difference, ModelReport, Report};
use crate::tau::train::{fit, EpochLog, TrainConfig, TrainResult};
use crate::nn::recurrent::Cell;
use anyhow::{bail, Result};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub struct Samples {
    pub train: Vec<Tau>,
    pub val: Vec<Tau>,
    pub test: Vec<Tau>,
    /// Where they came from, for the report and the checkpoint.
    pub description: serde_json::Value,
}

pub struct StudyOptions {
    pub archs: Vec<Arch>,
    pub hidden: usize,
    pub cell: Cell,
    pub train: TrainConfig,
    pub bootstrap: usize,
    pub device: Device,
}

/// Trains, saves the checkpoint to `out/checkpoint`, evaluates and writes the report into `out`.
pub fn train_and_report(s: &Samples, o: &StudyOptions, out: &Path, mut log: impl FnMut(&str)) -> Result<Report> {
    let t0 = Instant::now();
    let scaling = Scaling::fit(&s.train)?;
    let train = Encoded::new(&s.train, &scaling, "training sample")?;
    let val = Encoded::new(&s.val, &scaling, "validation sample")?;
    let mut trained = Vec::new();
    for &arch in &o.archs {
        let spec = ModelSpec { arch, hidden: o.hidden, cell: o.cell };
        let mut m = Trained::init(spec, o.train.seed, &o.device)?;
        let name = arch.name();
        log(&format!("training {name} ({} parameters) on {} taus, validating on {}", m.num_params(), train.n, val.n));
        let result = fit(m.model.as_ref(), &m.named_vars(), &train, &val, scaling.target_std as f64, &o.train, &o.device, |e: &EpochLog| {
            log(&format!(
                "  {name} epoch {:>3}  train {:.5}  val {:.5}  {:.1}s  {:.0} taus/s ({} per CPU-s)",
                e.epoch,
                e.train_loss,
                e.val_loss,
                e.seconds,
                e.taus_per_s,
                e.taus_per_cpu_s.map_or("-".into(), |v| format!("{v:.0}"))
            ))
        })?;
        // Calibration: one factor that puts the validation response at exactly 1.
        let raw = m.raw_ratios(&val, &scaling, &o.device)?;
        let mut x: Vec<f64> = raw.iter().zip(&s.val).map(|(r, t)| r / t.ratio()).collect();
        m.calibration = 1.0 / figure(&mut x).response;
        let per_cpu = result.taus_per_cpu_s.map_or("-".into(), |v| format!("{v:.0}"));
        log(&format!("  {name}: best epoch {} of {}, {:.0} taus/s ({per_cpu} per CPU-s), calibration {:.4}", result.best_epoch, result.epochs_run, result.taus_per_s, m.calibration));
        trained.push((m, Some(result)));
    }
    let max_particles = s.train.iter().map(|t| t.particles.len()).max().unwrap_or(0);
    let ckpt = out.join("checkpoint");
    checkpoint::save(&ckpt, &scaling, &trained.iter().map(|(m, _)| m).collect::<Vec<_>>(), max_particles, s.description.clone())?;
    let report = evaluate(&trained, &scaling, &s.test, max_particles, s.description.clone(), o, t0, out)?;
    crate::fsutil::atomic_write(&ckpt.join("README.md"), report::model_card(&report, "<this directory>").as_bytes())?;
    Ok(report)
}

/// Loads the checkpoint in `dir`, evaluates it on `test` and writes the report into `out`.
pub fn evaluate_checkpoint(dir: &Path, test: &[Tau], description: serde_json::Value, o: &StudyOptions, out: &Path) -> Result<Report> {
    let t0 = Instant::now();
    let (cfg, scaling, models) = checkpoint::load(dir, &o.device)?;
    let trained: Vec<(Trained, Option<TrainResult>)> = models.into_iter().map(|m| (m, None)).collect();
    evaluate(&trained, &scaling, test, cfg.max_particles, description, o, t0, out)
}

/// Evaluates `models` on `test` and writes report.json, report.md and the plots into `out`.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    models: &[(Trained, Option<TrainResult>)],
    scaling: &Scaling,
    test: &[Tau],
    max_particles: usize,
    samples: serde_json::Value,
    o: &StudyOptions,
    t0: Instant,
    out_dir: &Path,
) -> Result<Report> {
    if let Some((i, t)) = test.iter().enumerate().find(|(_, t)| t.particles.len() > max_particles) {
        bail!(
            "test tau {} has {} particles but the models were trained on at most {max_particles}: regenerate the test sample with --max-particles {max_particles}",
            i + 1,
            t.particles.len()
        );
    }
    let enc = Encoded::new(test, scaling, "test sample")?;
    let mut ratios = Vec::new();
    for (m, _) in models {
        let est = m.ratios(&enc, scaling, &o.device)?;
        ratios.push(est.iter().zip(test).map(|(r, t)| r / t.ratio()).collect::<Vec<f64>>());
    }
    let names: Vec<&str> = models.iter().map(|(m, _)| m.name()).collect();
    let index = |n: &str| names.iter().position(|&k| k == n);
    let mut pairs = Vec::new();
    for (a, b) in [("rnn", "jet"), ("rnn", "deepsets"), ("deepsets", "jet"), ("rnn", "const")] {
        if let (Some(a), Some(b)) = (index(a), index(b)) {
            pairs.push((a, b));
        }
    }
    let views: Vec<&[f64]> = ratios.iter().map(|v| v.as_slice()).collect();
    let bs = bootstrap(&views, &pairs, o.bootstrap, o.train.seed);
    let mut out = BTreeMap::new();
    for (k, (m, result)) in models.iter().enumerate() {
        let b = breakdown(&ratios[k], test);
        out.insert(m.name().to_string(), ModelReport::new(b, bs.resolution_err[k], m.num_params(), m.calibration, result.clone()));
    }
    let differences = bs.differences.iter().map(|&(a, b, value, err)| (format!("{}-{}", names[a], names[b]), Difference { value, err })).collect();
    let report = Report {
        n_test: test.len(),
        samples,
        bound: BoundSummary::new(&bound(test)),
        models: out,
        differences,
        bootstrap_replicates: o.bootstrap,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let named: Vec<(&str, &[f64])> = names.iter().copied().zip(views).collect();
    report::write(out_dir, &report, &named)?;
    Ok(report)
}
