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
    /// Generate hadronic tau decays (seeded Monte Carlo with a CMS-like detector) as JSON Lines.
    TauGen(cli::tau_gen::TauGenArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Corpus(a) => cli::corpus::run(a),
        Command::TauGen(a) => cli::tau_gen::run(a),
    };
    if let Err(e) = result {
        // One line: the chain of contexts joined by ": ".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
