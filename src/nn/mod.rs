//! Neural-network building blocks shared by the recipe and tau models.

pub mod adamw;
pub mod attention;
pub(crate) mod cpu;
pub mod cross_entropy;
pub mod gelu;
pub mod init;
pub mod layer_norm;
pub mod linear;
pub mod recurrent;
pub mod schedule;
