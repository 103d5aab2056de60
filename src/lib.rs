//! gen: character-level recipe models and tau-lepton momentum regression on candle.
//!
//! Recipes: corpus → tokenizer → model → train → checkpoint → sample.
//! Taus:    tau::generator → tau::dataset → tau::model → tau::train → tau::report.
//! The recurrent layer (`nn::recurrent`) is written once and serves both halves.

pub mod corpus;
pub mod duration;
pub mod fsutil;
pub mod model;
pub mod nn;
pub mod rng;
pub mod tokenizer;
