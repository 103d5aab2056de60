//! One module per subcommand: its arguments (clap derive) and its `run`.

pub mod bench;
pub mod corpus;
pub mod eval;
pub mod judge;
pub mod sample;
pub mod train;
pub mod tau_gen;
pub mod tau_rnn;
