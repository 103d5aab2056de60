//! `gen tau-gen`: write a seeded sample of reconstructed taus as JSON Lines, or (`--bound FILE`)
//! compute the best resolution any tau_pt regression can reach on a file of taus.

use anyhow::{bail, Context, Result};
use clap::Args;
use gen::fsutil::temp_sibling;
use gen::tau::bound::{bound, BoundReport, Resolution};
use gen::tau::format::{read_jsonl, write_tau, DecayMode, OnError};
use gen::tau::generator::{chunk_sizes, parse_modes, Detector, GenConfig, Generator, Process};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TauGenArgs {
    /// Production: h (H→ττ, P = 0), z (Z→ττ, ⟨P⟩ = −0.14), w (W→τν, P = −1), flat (single taus).
    #[arg(long, value_enum, default_value_t = Process::H)]
    pub process: Process,
    /// Number of taus to write (taus passing the selection).
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    /// Random seed; the same seed gives the same file on any number of threads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output JSON Lines file (written to a temporary sibling, then renamed).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Detector model: cms (resolutions, photon threshold and merging) or ideal (acceptance only).
    #[arg(long, value_enum, default_value_t = Detector::Cms)]
    pub detector: Detector,
    /// Decay modes: all, hadronic, leptonic, or a comma list of 1p0n,1p1n,1p2n,3p0n,3p1n,e,mu,other.
    #[arg(long, default_value = "all")]
    pub modes: String,
    /// Lowest tau pT for --process flat, GeV.
    #[arg(long, default_value_t = 20.0)]
    pub pt_min: f64,
    /// Highest tau pT for --process flat, GeV (log-uniform in between).
    #[arg(long, default_value_t = 200.0)]
    pub pt_max: f64,
    /// τ⁻ polarization in [-1, 1] for --process flat (h, z and w fix their own) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub polarization: Option<f64>,
    /// Mean of the exponential boson pT spectrum, GeV (h, z, w); part of the prior, see data/README.md.
    #[arg(long, default_value_t = 20.0)]
    pub boson_pt_mean: f64,
    /// Keep taus whose visible pT (sum of the listed particles) is at least this, GeV.
    #[arg(long, default_value_t = 20.0)]
    pub vis_pt_min: f64,
    /// Keep at most this many particles per tau, the hardest (the softest are dropped).
    #[arg(long, default_value_t = 5)]
    pub max_particles: usize,
    /// Photon energy response (measured = scale × smeared energy).
    #[arg(long, default_value_t = 1.0)]
    pub photon_scale: f64,
    /// Probability that a charged track is reconstructed.
    #[arg(long, default_value_t = 1.0)]
    pub track_efficiency: f64,
    /// Worker threads [default: all cores]; the output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object (the run summary, or the bound) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Instead of generating: read this tau JSONL file and report the best resolution of
    /// tau_pt/vis_pt reachable from (decay_mode, vis_pt, vis_mass).
    #[arg(long)]
    pub bound: Option<PathBuf>,
    /// With --bound: on a bad line, stop with its file:line, or skip it and count it.
    #[arg(long, value_enum, default_value_t = OnError::Stop)]
    pub on_error: OnError,
}

#[derive(Serialize)]
struct Summary {
    out: String,
    process: Process,
    detector: Detector,
    seed: u64,
    taus: usize,
    generated: usize,
    selection_efficiency: f64,
    modes: BTreeMap<&'static str, usize>,
    seconds: f64,
    taus_per_second: f64,
}

pub fn run(args: &TauGenArgs) -> Result<()> {
    let pool = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => rayon::ThreadPoolBuilder::new().num_threads(n).build().context("cannot start the worker threads")?,
        None => rayon::ThreadPoolBuilder::new().build().context("cannot start the worker threads")?,
    };
    pool.install(|| match &args.bound {
        Some(path) => run_bound(path, args),
        None => run_generate(args),
    })
}

fn config(args: &TauGenArgs) -> Result<GenConfig> {
    if args.polarization.is_some() && args.process != Process::Flat {
        bail!("--polarization applies only to --process flat (h, z and w fix their own polarization)");
    }
    Ok(GenConfig {
        process: args.process,
        boson_pt_mean: args.boson_pt_mean,
        pt_min: args.pt_min,
        pt_max: args.pt_max,
        polarization: args.polarization.unwrap_or(0.0),
        modes: parse_modes(&args.modes)?,
        detector: args.detector,
        vis_pt_min: args.vis_pt_min,
        max_particles: args.max_particles,
        photon_scale: args.photon_scale,
        track_efficiency: args.track_efficiency,
    })
}

fn run_generate(args: &TauGenArgs) -> Result<()> {
    let Some(out) = &args.out else {
        bail!("--out FILE is required (or --bound FILE to compute the bound of an existing sample)");
    };
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let cfg = config(args)?;
    let gen = Generator::new(&cfg)?;
    let t0 = Instant::now();
    let tmp = temp_sibling(out);
    let result = write_sample(&gen, args, out, &tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let (modes, generated) = result?;
    let seconds = t0.elapsed().as_secs_f64();
    let s = Summary {
        out: out.display().to_string(),
        process: cfg.process,
        detector: cfg.detector,
        seed: args.seed,
        taus: args.count,
        generated,
        selection_efficiency: args.count as f64 / generated as f64,
        modes: DecayMode::ALL.iter().zip(modes).filter(|(_, n)| *n > 0).map(|(m, n)| (m.as_str(), n)).collect(),
        seconds,
        taus_per_second: args.count as f64 / seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!("wrote {} taus to {} ({} generated, {:.1}% selected)", s.taus, s.out, s.generated, 100.0 * s.selection_efficiency);
    for (m, n) in &s.modes {
        println!("  {m:<6} {n:>10}  {:5.2}%", 100.0 * *n as f64 / s.taus as f64);
    }
    println!("{:.2} s, {:.0} taus/s", s.seconds, s.taus_per_second);
    Ok(())
}

/// Generates in windows of chunks (in parallel, formatting included) and appends them in order.
/// Returns the per-mode counts and the number of taus generated before the selection.
fn write_sample(gen: &Generator, args: &TauGenArgs, out: &Path, tmp: &Path) -> Result<([usize; 8], usize)> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let file = std::fs::File::create(tmp).with_context(|| format!("cannot write {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(args.count as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} taus  {per_sec}  eta {eta}").unwrap());
    let chunks: Vec<(u64, usize)> = chunk_sizes(args.count).collect();
    let window = 4 * rayon::current_num_threads();
    let mut modes = [0usize; 8];
    let mut generated = 0;
    for batch in chunks.chunks(window) {
        let done: Vec<(Vec<u8>, [usize; 8], usize)> = batch
            .par_iter()
            .map(|&(i, n)| {
                let c = gen.chunk(args.seed, i, n)?;
                let mut buf = Vec::with_capacity(n * 300);
                let mut counts = [0usize; 8];
                for t in &c.taus {
                    write_tau(&mut buf, t);
                    counts[t.decay_mode.index()] += 1;
                }
                Ok((buf, counts, c.attempts))
            })
            .collect::<Result<_>>()?;
        for (buf, counts, attempts) in done {
            w.write_all(&buf).with_context(|| format!("cannot write {}", out.display()))?;
            for (m, c) in modes.iter_mut().zip(counts) {
                *m += c;
            }
            generated += attempts;
            bar.inc(counts.iter().sum::<usize>() as u64);
        }
    }
    bar.finish_and_clear();
    let file = w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", out.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::rename(tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok((modes, generated))
}

fn run_bound(path: &Path, args: &TauGenArgs) -> Result<()> {
    let (taus, report) = read_jsonl(path, args.on_error)?;
    for e in &report.errors {
        eprintln!("warning: skipped {e}");
    }
    if report.skipped > 0 {
        eprintln!("warning: skipped {} of {} lines of {}", report.skipped, report.lines, path.display());
    }
    if taus.len() < 100 {
        bail!("{}: {} usable taus; the bound needs at least 100 (thousands for a stable figure)", path.display(), taus.len());
    }
    let b = bound(&taus);
    if args.json {
        println!("{}", serde_json::to_string(&b)?);
        return Ok(());
    }
    print_bound(path, &b, report.skipped);
    Ok(())
}

fn print_bound(path: &Path, b: &BoundReport, skipped: usize) {
    let f = |r: &Resolution| format!("{:.3}   (median {:.3}, IQR {:.3}–{:.3})", r.iqr_over_median, r.median, r.q25, r.q75);
    println!("{}: {} taus ({} lines skipped); resolution = IQR/median of r_est/r_true, r = tau_pt/vis_pt", path.display(), b.taus, skipped);
    println!("  constant estimate              {}", f(&b.constant));
    println!("  from (vis_pt, vis_mass)        {}", f(&b.from_vis));
    println!("  from (mode, vis_pt, vis_mass)  {}", f(&b.best));
    println!("  per mode           taus     constant   best");
    for m in &b.per_mode {
        println!("    {:<6} {:>14}     {:.3}      {:.3}", m.mode.as_str(), m.taus, m.constant.iqr_over_median, m.best.iqr_over_median);
    }
}
