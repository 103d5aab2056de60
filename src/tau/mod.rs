//! Hadronic tau decays: the generator (`gen tau-gen`), the JSONL dataset format and its reader,
//! and the resolution bound that any tau_pt regression can be compared with.

pub mod bound;
pub mod format;
pub mod generator;
