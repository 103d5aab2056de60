//! `gen judge`: sample N recipes and measure structure, novelty, repetition and coherence.

use super::sample::{Prepared, SamplingArgs};
use anyhow::Result;
use clap::Args;
use gen::corpus::{self, Format};
use gen::judge::{judge, titles_of, Judgement};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Samples to generate and judge (in one batch).
    #[arg(short = 'n', long = "count", default_value_t = 200)]
    pub count: usize,
    /// Training corpus, for the share of titles that are new [skipped when absent]
    #[arg(long, default_value = "data/recipes")]
    pub data: PathBuf,
    /// Judge the corpus's held-out recipes instead of samples: what each measure gives for real
    /// recipes the model never saw (titles are compared with the training split's).
    #[arg(long)]
    pub reference: bool,
    /// With --reference: share of recipes held out, as in training.
    #[arg(long, default_value_t = 0.02)]
    pub val_fraction: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Room for long recipes: 12% of the Recipe Box recipes exceed 2000 characters, 1% exceed 3850.
const JUDGE_MAX_CHARS: usize = 4000;

pub fn run(args: &JudgeArgs) -> Result<()> {
    if args.reference {
        return reference(args);
    }
    let Prepared { settings, device, ckpt, prime } = args.sampling.prepare(args.count, JUDGE_MAX_CHARS)?;
    let titles = if args.data.exists() {
        Some(titles_of(&corpus::read(&args.data, Format::Auto)?.docs))
    } else {
        eprintln!("note: {} not found, so title novelty is not measured (pass --data)", args.data.display());
        None
    };
    let out = gen::sample::generate(&ckpt.model, &ckpt.tokenizer, &prime, args.count, &settings, &device, &mut |_, _| {})?;
    let rewinds = out.iter().map(|g| g.rewinds as f64).sum::<f64>() / out.len() as f64;
    let texts: Vec<(String, bool)> = out.into_iter().map(|g| (g.text, g.finished)).collect();
    let j = judge(&texts, titles.as_ref());
    let info = Sampled { temperature: settings.temperature, seed: settings.seed, no_repeat: settings.no_repeat_ingredients, rewinds };
    report(&j, args.json, Some(info))
}

/// How the judged samples were drawn.
struct Sampled {
    temperature: f64,
    seed: u64,
    no_repeat: bool,
    /// Ingredient lines sampled again per sample (the line guard).
    rewinds: f64,
}

/// The measures on real held-out recipes: the values a perfect model would reach.
fn reference(args: &JudgeArgs) -> Result<()> {
    corpus::validate_fraction(args.val_fraction)?;
    let (train, val) = corpus::split(corpus::read(&args.data, Format::Auto)?.docs, args.val_fraction);
    if val.is_empty() {
        anyhow::bail!("{} has no held-out recipes at --val-fraction {}; raise it", args.data.display(), args.val_fraction);
    }
    let texts: Vec<(String, bool)> = val.into_iter().map(|d| (d.text, true)).collect();
    report(&judge(&texts, Some(&titles_of(&train))), args.json, None)
}

fn report(j: &Judgement, json: bool, sampling: Option<Sampled>) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(j)?;
        if let Some(s) = &sampling {
            v["temperature"] = s.temperature.into();
            v["seed"] = s.seed.into();
            v["no_repeat_ingredients"] = s.no_repeat.into();
            v["rewound_lines_per_sample"] = s.rewinds.into();
        }
        println!("{v}");
    } else {
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        match &sampling {
            Some(s) => {
                println!("samples                 {} at temperature {}", j.samples, s.temperature);
                if s.no_repeat {
                    println!("rewound lines           {:.2} per sample (repeated ingredient lines sampled again)", s.rewinds);
                }
            }
            None => println!("held-out recipes        {}", j.samples),
        }
        println!("valid structure         {}", pct(j.valid_structure));
        println!("unfinished (max chars)  {}", pct(j.unfinished));
        println!("novel titles            {}", j.novel_titles.map_or("not measured".into(), pct));
        println!("repeated ingredient     {}", pct(j.repeated_ingredient));
        println!("ingredient coherence    {}", pct(j.ingredient_coherence));
        println!("mean length             {:.0} characters", j.mean_chars);
    }
    Ok(())
}
