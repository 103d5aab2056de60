//! A tau-regression checkpoint directory: `config.json` (format, models, calibration, what it was
//! trained on), `scaling.json` (the feature standardisation fitted on the training sample),
//! `<model>.safetensors` per model, and `README.md` (the model card, written by the report).
//! Weights files are written before config.json, so a torn save never names missing weights.

use crate::checkpoint::{load_tensors, save_tensors, set_vars};
use crate::fsutil::{atomic_write_json, read_json};
use crate::nn::init::seeded_var_builder;
use crate::tau::dataset::{Encoded, Scaling};
use crate::tau::model::{build, ModelSpec, Regressor};
use crate::tau::train::predict;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: &str = "gen-tau-regression";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedModel {
    pub name: String,
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// Multiplies the network's r estimate: 1 / median(r_est/r_true) on the validation sample.
    pub calibration: f64,
    pub weights: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TauCheckpointConfig {
    pub format: String,
    pub format_version: u32,
    /// Most particles per tau seen in training; longer taus are refused.
    pub max_particles: usize,
    pub models: Vec<SavedModel>,
    /// The samples and settings it was trained with (free-form, for the model card).
    pub trained_on: serde_json::Value,
}

/// A model with its parameters and calibration.
pub struct Trained {
    pub spec: ModelSpec,
    pub varmap: VarMap,
    pub model: Box<dyn Regressor>,
    pub calibration: f64,
}

impl Trained {
    /// A fresh model; `seed` fixes its initial weights.
    pub fn init(spec: ModelSpec, seed: u64, device: &Device) -> Result<Trained> {
        if spec.hidden == 0 {
            bail!("--hidden must be at least 1");
        }
        let varmap = VarMap::new();
        let model = build(&spec, seeded_var_builder(&varmap, seed, device))?;
        Ok(Trained { spec, varmap, model, calibration: 1.0 })
    }

    pub fn name(&self) -> &'static str {
        self.spec.arch.name()
    }

    /// Parameters by name, sorted.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<_> = self.varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn num_params(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Uncalibrated r estimates (tau_pt / vis_pt) for every tau of `data`.
    pub fn raw_ratios(&self, data: &Encoded, s: &Scaling, device: &Device) -> Result<Vec<f64>> {
        Ok(predict(self.model.as_ref(), data, device)?.into_iter().map(|p| (p as f64 * s.target_std as f64 + s.target_mean as f64).exp()).collect())
    }

    /// Calibrated r estimates.
    pub fn ratios(&self, data: &Encoded, s: &Scaling, device: &Device) -> Result<Vec<f64>> {
        Ok(self.raw_ratios(data, s, device)?.into_iter().map(|r| r * self.calibration).collect())
    }
}

pub fn save(dir: &Path, scaling: &Scaling, models: &[&Trained], max_particles: usize, trained_on: serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut saved = Vec::new();
    for m in models {
        let weights = format!("{}.safetensors", m.name());
        let tensors: HashMap<String, Tensor> = m.named_vars().into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        save_tensors(&tensors, &dir.join(&weights))?;
        saved.push(SavedModel { name: m.name().to_string(), spec: m.spec, calibration: m.calibration, weights });
    }
    atomic_write_json(&dir.join("scaling.json"), scaling)?;
    let cfg = TauCheckpointConfig { format: FORMAT.into(), format_version: FORMAT_VERSION, max_particles, models: saved, trained_on };
    atomic_write_json(&dir.join("config.json"), &cfg)
}

pub fn load(dir: &Path, device: &Device) -> Result<(TauCheckpointConfig, Scaling, Vec<Trained>)> {
    if !dir.is_dir() {
        bail!("{}: checkpoint directory not found (train one with `gen tau-rnn --out DIR`)", dir.display());
    }
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        bail!("{}: no config.json, so this is not a gen tau-rnn checkpoint", dir.display());
    }
    let value: serde_json::Value = read_json(&config_path)?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        bail!("{}: not a gen tau-rnn checkpoint (its config.json has no \"format\": \"{FORMAT}\")", dir.display());
    }
    let cfg: TauCheckpointConfig = serde_json::from_value(value).map_err(|e| anyhow!("{}: invalid tau-rnn config: {e}", config_path.display()))?;
    if cfg.format_version != FORMAT_VERSION {
        bail!("{}: checkpoint format {} is not supported (this gen reads {FORMAT_VERSION})", dir.display(), cfg.format_version);
    }
    let scaling: Scaling = read_json(&dir.join("scaling.json")).with_context(|| format!("{}: no usable scaling.json", dir.display()))?;
    scaling.check_compatible().with_context(|| dir.display().to_string())?;
    if cfg.models.is_empty() {
        bail!("{}: config.json lists no models", dir.display());
    }
    let mut models = Vec::new();
    for m in &cfg.models {
        if !(m.calibration.is_finite() && m.calibration > 0.0) {
            bail!("{}: model {} has calibration {}, not a positive number", dir.display(), m.name, m.calibration);
        }
        let mut t = Trained::init(m.spec, 0, device)?;
        t.calibration = m.calibration;
        let path = dir.join(&m.weights);
        set_vars(&t.varmap, &load_tensors(&path, device)?, &path)?;
        models.push(t);
    }
    Ok((cfg, scaling, models))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::recurrent::Cell;
    use crate::tau::generator::{generate, GenConfig};
    use crate::tau::model::{Arch, ModelSpec};

    #[test]
    fn save_then_load_gives_the_same_predictions() {
        let dev = Device::Cpu;
        let taus = generate(&GenConfig::default(), 200, 4).unwrap();
        let s = Scaling::fit(&taus).unwrap();
        let e = Encoded::new(&taus, &s, "test").unwrap();
        let mut models: Vec<Trained> = Arch::ALL.iter().map(|&arch| Trained::init(ModelSpec { arch, hidden: 6, cell: Cell::Lstm }, 7, &dev).unwrap()).collect();
        models[3].calibration = 1.03;
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &s, &models.iter().collect::<Vec<_>>(), 5, serde_json::json!({"test": true})).unwrap();
        let (cfg, s2, loaded) = load(dir.path(), &dev).unwrap();
        assert_eq!(s2, s);
        assert_eq!(cfg.max_particles, 5);
        assert_eq!(loaded.len(), 4);
        for (a, b) in models.iter().zip(&loaded) {
            assert_eq!(a.spec, b.spec);
            assert_eq!(a.ratios(&e, &s, &dev).unwrap(), b.ratios(&e, &s2, &dev).unwrap());
        }
        // Another model's weights under this config: named, not a panic.
        std::fs::copy(dir.path().join("jet.safetensors"), dir.path().join("rnn.safetensors")).unwrap();
        let err = load(dir.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("rnn.safetensors") && err.contains("has no tensor"), "{err}");
    }
}
