//! `gen tau-rnn`: regress tau_pt/vis_pt from the visible particles with const, jet, deepsets and rnn
//! models, side by side, against the resolution bound. With no arguments, the whole default study
//! (H→ττ, CMS-like detector, hadronic modes) from generated samples; `--train/--val/--test` take
//! tau-gen JSONL files instead; `--checkpoint DIR` evaluates saved models without training.

use anyhow::{bail, Context, Result};
use clap::Args;
use gen::nn::recurrent::Cell;
use gen::tau::format::{read_jsonl, OnError, Tau};
use gen::tau::generator::{generate, parse_modes, Detector, GenConfig, Process};
use gen::tau::model::Arch;
use gen::tau::study::{evaluate_checkpoint, train_and_report, Samples, StudyOptions};
use gen::tau::train::TrainConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TauRnnArgs {
    /// Training sample (tau-gen JSONL) instead of a generated one.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Validation sample (early stopping, calibration) [default: with --train, a fifth of it chosen
    /// by position hash; otherwise generated].
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Test sample the report is made on [default: generated].
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Evaluate the models saved in this checkpoint directory (e.g. checkpoints/tau-rnn) instead of training.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory for the report, plots and (when training) the checkpoint in OUT/checkpoint.
    #[arg(long, default_value = "runs/tau-rnn")]
    pub out: PathBuf,
    /// Production of the generated samples: h, z, w or flat.
    #[arg(long, value_enum, default_value_t = Process::H)]
    pub process: Process,
    /// Production of the generated test sample only [default: --process], e.g. train on h, test on z.
    #[arg(long, value_enum)]
    pub test_process: Option<Process>,
    /// Detector of the generated samples: cms or ideal.
    #[arg(long, value_enum, default_value_t = Detector::Cms)]
    pub detector: Detector,
    /// Decay modes of the generated samples: all, hadronic, leptonic or a comma list.
    #[arg(long, default_value = "hadronic")]
    pub modes: String,
    /// Photon energy response of the generated samples' detector.
    #[arg(long, default_value_t = 1.0)]
    pub photon_scale: f64,
    /// Charged-track efficiency of the generated samples' detector.
    #[arg(long, default_value_t = 1.0)]
    pub track_efficiency: f64,
    /// Generated training taus.
    #[arg(long, default_value_t = 200_000)]
    pub n_train: usize,
    /// Generated validation taus.
    #[arg(long, default_value_t = 50_000)]
    pub n_val: usize,
    /// Generated test taus.
    #[arg(long, default_value_t = 100_000)]
    pub n_test: usize,
    /// Models to train, comma separated: const, jet, deepsets, rnn.
    #[arg(long, default_value = "const,jet,deepsets,rnn", value_delimiter = ',', value_enum)]
    pub models: Vec<Arch>,
    /// Recurrent cell of the rnn model: gru, lstm or rnn (tanh).
    #[arg(long, value_enum, default_value_t = Cell::Gru)]
    pub cell: Cell,
    /// Hidden width of every model (recurrent state, MLP layers).
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Most epochs per model (the cosine schedule decays over them).
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Stop a model after this many epochs without a better validation loss. Generous, because the
    /// models differ by ~1% in resolution: a model stopped early would fake a gain for the others.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Taus per optimizer step.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Peak learning rate (AdamW; warm-up, then cosine over the epoch budget).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// AdamW decoupled weight decay on weight matrices.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Seed of the generated samples (train 3s, validation 3s+1, test 3s+2), initial weights,
    /// shuffling and bootstrap.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bootstrap resamplings of the test sample for the uncertainties.
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// On a bad line of an input file: stop with its file:line, or skip it and count it.
    #[arg(long, value_enum, default_value_t = OnError::Stop)]
    pub on_error: OnError,
    /// Threads for the tensor operations of training and inference (generation and bootstrap use
    /// all cores). The per-step tensors are small, so splitting them across threads costs more in
    /// synchronisation than it gains, far more on a busy machine; 1 is the measured best.
    #[arg(long, default_value_t = 1)]
    pub tensor_threads: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print report.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TauRnnArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = gen::device::parse(&args.device)?;
    check(args)?;
    set_tensor_threads(args.tensor_threads);
    let opts = StudyOptions {
        archs: dedup(&args.models),
        hidden: args.hidden,
        cell: args.cell,
        train: TrainConfig {
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr,
            patience: args.patience,
            weight_decay: args.weight_decay,
            clip: args.clip,
            seed: args.seed,
        },
        bootstrap: args.bootstrap,
        device,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let report = match &args.checkpoint {
        Some(dir) => {
            let (test, desc) = test_sample(args)?;
            eprintln!("evaluating {} on {} test taus", dir.display(), test.len());
            evaluate_checkpoint(dir, &test, json!({ "checkpoint": dir.display().to_string(), "test": desc }), &opts, &args.out)?
        }
        None => {
            let samples = samples(args)?;
            eprintln!("samples: {} train, {} validation, {} test taus ({:.1}s)", samples.train.len(), samples.val.len(), samples.test.len(), t0.elapsed().as_secs_f64());
            train_and_report(&samples, &opts, &args.out, |line| eprintln!("{line}"))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", gen::tau::report::table(&report));
        let rnn = report.models.get("rnn").and_then(|m| m.training.as_ref());
        if let Some(t) = rnn {
            let per_cpu = t.taus_per_cpu_s.map_or(String::new(), |v| format!(" ({v:.0} per CPU-second)"));
            println!("rnn training: {:.0} taus/s per epoch{per_cpu}", t.taus_per_s);
        }
        println!("report, plots{} in {} ({:.0}s)", if args.checkpoint.is_some() { "" } else { ", checkpoint" }, args.out.display(), t0.elapsed().as_secs_f64());
    }
    Ok(())
}

fn check(a: &TauRnnArgs) -> Result<()> {
    if a.checkpoint.is_some() && (a.train.is_some() || a.val.is_some()) {
        bail!("--checkpoint evaluates saved models without training: drop --train/--val, or drop --checkpoint to train");
    }
    if a.val.is_some() && a.train.is_none() {
        bail!("--val needs --train FILE (generated training samples come with their own validation sample)");
    }
    if a.models.is_empty() {
        bail!("--models needs at least one of const, jet, deepsets, rnn");
    }
    for (flag, v) in [("--epochs", a.epochs), ("--batch", a.batch), ("--hidden", a.hidden), ("--patience", a.patience), ("--bootstrap", a.bootstrap), ("--tensor-threads", a.tensor_threads)] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", a.lr);
    }
    if !(a.weight_decay >= 0.0 && a.clip >= 0.0) {
        bail!("--weight-decay and --clip must not be negative");
    }
    Ok(())
}

/// candle sizes its matmul parallelism from RAYON_NUM_THREADS at every call; our own rayon pool
/// (generation, bootstrap) is started first so it keeps every core.
fn set_tensor_threads(n: usize) {
    let _ = rayon::current_num_threads();
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

fn dedup(archs: &[Arch]) -> Vec<Arch> {
    let mut v = archs.to_vec();
    v.sort();
    v.dedup();
    v
}

fn gen_config(args: &TauRnnArgs, process: Process) -> Result<GenConfig> {
    let cfg = GenConfig {
        process,
        modes: parse_modes(&args.modes)?,
        detector: args.detector,
        photon_scale: args.photon_scale,
        track_efficiency: args.track_efficiency,
        ..GenConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

fn generated(args: &TauRnnArgs, process: Process, count: usize, seed: u64, what: &str) -> Result<(Vec<Tau>, serde_json::Value)> {
    if count == 0 {
        bail!("--n-{what} must be at least 1");
    }
    let cfg = gen_config(args, process)?;
    let taus = generate(&cfg, count, seed)?;
    let desc = json!({ "generated": { "process": process.as_str(), "detector": args.detector, "modes": args.modes, "photon_scale": args.photon_scale,
        "track_efficiency": args.track_efficiency, "count": count, "seed": seed } });
    Ok((taus, desc))
}

fn read(path: &Path, on_error: OnError) -> Result<(Vec<Tau>, serde_json::Value)> {
    let (taus, report) = read_jsonl(path, on_error).map_err(|e| {
        // A producer that writes NaN or Infinity (Python's json does) fails as "expected value".
        let msg = format!("{e:#}");
        if msg.contains("expected value") {
            anyhow::anyhow!("{msg}; NaN and Infinity are not JSON numbers: every value must be finite")
        } else {
            e
        }
    })?;
    for e in &report.errors {
        eprintln!("warning: skipped {e}");
    }
    if taus.is_empty() {
        bail!("{}: no taus ({} lines read): give a tau-gen JSONL file", path.display(), report.lines);
    }
    let desc = json!({ "file": path.display().to_string(), "taus": taus.len(), "skipped": report.skipped });
    Ok((taus, desc))
}

fn test_sample(args: &TauRnnArgs) -> Result<(Vec<Tau>, serde_json::Value)> {
    match &args.test {
        Some(p) => read(p, args.on_error),
        None => generated(args, args.test_process.unwrap_or(args.process), args.n_test, 3 * args.seed + 2, "test"),
    }
}

fn samples(args: &TauRnnArgs) -> Result<Samples> {
    let (test, test_desc) = test_sample(args)?;
    let (train, val, train_desc, val_desc) = match &args.train {
        Some(p) => {
            let (all, desc) = read(p, args.on_error)?;
            match &args.val {
                Some(v) => {
                    let (val, vdesc) = read(v, args.on_error)?;
                    (all, val, desc, vdesc)
                }
                None => {
                    // A fifth by a hash of the position, so a file sorted by anything stays balanced.
                    let (val, train): (Vec<(usize, Tau)>, Vec<(usize, Tau)>) =
                        all.into_iter().enumerate().partition(|(i, _)| ((*i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40).is_multiple_of(5));
                    let (train, val): (Vec<Tau>, Vec<Tau>) = (train.into_iter().map(|x| x.1).collect(), val.into_iter().map(|x| x.1).collect());
                    if train.is_empty() || val.is_empty() {
                        bail!("{}: too few taus to split off a validation fifth: give --val FILE or more taus", p.display());
                    }
                    (train, val, desc, json!("a fifth of the training file"))
                }
            }
        }
        None => {
            let (train, d) = generated(args, args.process, args.n_train, 3 * args.seed, "train")?;
            let (val, v) = generated(args, args.process, args.n_val, 3 * args.seed + 1, "val")?;
            (train, val, d, v)
        }
    };
    Ok(Samples { train, val, test, description: json!({ "train": train_desc, "val": val_desc, "test": test_desc }) })
}
