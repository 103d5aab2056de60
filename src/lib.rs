//! gen: character-level recipe models and tau-lepton momentum regression on candle.
//!
//! Recipes: corpus → tokenizer → model → train → checkpoint → sample.
//! Taus:    tau::generator → tau::dataset → tau::model → tau::train → tau::report.
//! The recurrent layer (`nn::recurrent`) is written once and serves both halves.

pub mod corpus;
pub mod duration;
pub mod fsutil;
pub mod rng;
pub mod tau;
pub mod tokenizer;
