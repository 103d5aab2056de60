//! Hadronic tau decays: the generator (`gen tau-gen`), the JSONL dataset format and its reader,
//! the resolution bound that any tau_pt regression can be compared with, and the regressions
//! themselves (`gen tau-rnn`: dataset → model → train → study → report, checkpoint).

pub mod bound;
pub mod checkpoint;
pub mod dataset;
pub mod format;
pub mod generator;
pub mod metrics;
pub mod model;
pub mod report;
pub mod study;
pub mod train;
