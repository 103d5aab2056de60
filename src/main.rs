//! The `gen` command line: parse, dispatch, and turn every error into one line and a non-zero exit.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "gen", version, about = "Train and run character-level recipe models and tau-lepton momentum regressions")]
#[command(propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a recipe corpus and report what training would see (recipes, drops, vocabulary, split).
    Corpus(cli::corpus::CorpusArgs),
    /// Train a character-level LSTM/GRU/RNN or transformer on a recipe corpus (resumable, validation bpc).
    TrainRecipes(cli::train::TrainArgs),
    /// Bits per character of a checkpoint on a recipe corpus.
    Eval(cli::eval::EvalArgs),
    /// Write new recipes with a trained model (temperature, top-k/top-p, seed, prime).
    Sample(cli::sample::SampleArgs),
    /// Measure training or sampling throughput; prints one JSON line.
    Bench(cli::bench::BenchArgs),
    /// Sample recipes and measure valid structure, title novelty, repeated ingredients, coherence.
    Judge(cli::judge::JudgeArgs),
    /// Generate hadronic tau decays (seeded Monte Carlo with a CMS-like detector) as JSON Lines.
    TauGen(cli::tau_gen::TauGenArgs),
    /// Regress tau pT from the visible particles (const, jet, deepsets, rnn) and report against the bound.
    TauRnn(cli::tau_rnn::TauRnnArgs),
}

/// glibc returns freed memory to the OS and faults it back in on the next training step; raising the
/// trim and mmap thresholds keeps the per-step buffers in the heap (measured: ~15% of a step).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only adjusts allocator tunables; called before any other thread exists.
    unsafe {
        mallopt(M_TRIM_THRESHOLD, 512 << 20);
        mallopt(M_MMAP_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Corpus(a) => cli::corpus::run(a),
        Command::TrainRecipes(a) => cli::train::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Sample(a) => cli::sample::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Judge(a) => cli::judge::run(a),
        Command::TauGen(a) => cli::tau_gen::run(a),
        Command::TauRnn(a) => cli::tau_rnn::run(a),
    };
    if let Err(e) = result {
        // A closed stdout (`gen sample | head`) is the reader's choice, not an error.
        let broken_pipe = e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
        if broken_pipe {
            std::process::exit(0);
        }
        // One line: the chain of contexts joined by ": ". candle appends a backtrace to its
        // messages when RUST_BACKTRACE is set; users get the message, not the trace.
        let msg = format!("{e:#}");
        eprintln!("error: {}", msg.lines().next().unwrap_or_default());
        std::process::exit(1);
    }
}
