//! One module per subcommand: its arguments (clap derive) and its `run`.

pub mod corpus;
pub mod tau_gen;
