//! `metrics.jsonl`: one line per log step and per evaluation, appended as training goes.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub step: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_bpc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bpc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chars_per_s: Option<f64>,
    pub elapsed_s: f64,
}

pub struct MetricsLog {
    path: PathBuf,
    pub records: Vec<Record>,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, keeping only records up to `resume_step` (a resumed run rewrites
    /// whatever came after its checkpoint).
    pub fn open(dir: &Path, resume_step: Option<u64>) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut records = Vec::new();
        if let (Some(step), Ok(text)) = (resume_step, std::fs::read_to_string(&path)) {
            records = text.lines().filter_map(|l| serde_json::from_str::<Record>(l).ok()).filter(|r| r.step <= step).collect();
        }
        let mut body = String::new();
        for r in &records {
            body.push_str(&serde_json::to_string(r)?);
            body.push('\n');
        }
        crate::fsutil::atomic_write(&path, body.as_bytes())?;
        Ok(Self { path, records })
    }

    pub fn push(&mut self, r: Record) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&r)?)?;
        self.records.push(r);
        Ok(())
    }
}
