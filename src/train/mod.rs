//! Training for the character models: data streams, the loop, progress, metrics and the loss plot.

pub mod data;
pub mod metrics;
pub mod progress;
pub mod streams;
pub mod trainer;

use crate::plot::{line_chart, Chart, Series};
use anyhow::Result;
use std::path::Path;

/// `loss.png`: training and validation bpc against steps.
pub fn plot_metrics(path: &Path, records: &[metrics::Record]) -> Result<()> {
    let train: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.step as f64, r.train_bpc?))).collect();
    let val: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.step as f64, r.val_bpc?))).collect();
    let mut series = vec![Series { name: "train".into(), points: train }];
    if !val.is_empty() {
        series.push(Series { name: "validation".into(), points: val });
    }
    line_chart(path, &Chart { title: "Training curve", x_label: "step", y_label: "bits per character", log_x: false }, &series)
}
