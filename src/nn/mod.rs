//! Neural-network building blocks shared by the recipe and tau models.

pub mod adamw;
pub mod cross_entropy;
pub mod init;
pub mod recurrent;
pub mod schedule;
