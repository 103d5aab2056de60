//! Checkpoint directories: `config.json`, `model.safetensors`, `tokenizer.json` (enough to sample and
//! evaluate), plus `optimizer.safetensors` and `train_state.json` (enough to resume exactly).
//! Every file is written to a temp sibling and renamed, `train_state.json` last, so an interrupted
//! write leaves the previous checkpoint intact.

use crate::fsutil::{atomic_write_json, read_json, temp_sibling};
use crate::model::{CharModel, ModelConfig};
use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use crate::nn::init::seeded_var_builder;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointConfig {
    pub format_version: u32,
    #[serde(flatten)]
    pub model: ModelConfig,
}

/// Where training stands, for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    pub step: u64,
    /// Data cursor: epoch and the next window within it.
    pub epoch: u64,
    pub window: u64,
    pub tokens_seen: u64,
    /// Dropout RNG.
    pub rng: Rng,
    pub best_val_bpc: Option<f64>,
    pub best_step: Option<u64>,
    pub evals_since_best: u32,
    pub elapsed_s: f64,
    /// The settings the run was started with; a resume must not change those that shape the data.
    pub settings: serde_json::Value,
}

/// A model loaded from (or about to be saved to) a checkpoint directory.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub tokenizer: CharTokenizer,
    pub varmap: VarMap,
    pub model: CharModel,
}

impl Checkpoint {
    /// A freshly initialised model; `seed` fixes its initial weights.
    pub fn init(config: ModelConfig, tokenizer: CharTokenizer, device: &Device, seed: u64) -> Result<Self> {
        config.validate()?;
        if config.vocab() != tokenizer.vocab_size() {
            bail!("model vocabulary {} does not match the tokenizer's {}", config.vocab(), tokenizer.vocab_size());
        }
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, device);
        let model = CharModel::new(&config, vb)?;
        Ok(Self { config, tokenizer, varmap, model })
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: checkpoint directory not found (train one with `gen train-recipes --out DIR`)", dir.display());
        }
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            bail!("{}: no config.json, so this is not a gen recipe checkpoint", dir.display());
        }
        let cfg: CheckpointConfig = read_json(&config_path)
            .with_context(|| format!("{}: not a gen recipe-model config", config_path.display()))?;
        if cfg.format_version != FORMAT_VERSION {
            bail!("{}: checkpoint format {} is not supported (this gen reads {FORMAT_VERSION})", dir.display(), cfg.format_version);
        }
        let tokenizer = CharTokenizer::load(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() != cfg.model.vocab() {
            bail!(
                "{}: tokenizer.json has {} tokens but the model was built for {}; the tokenizer belongs to another model",
                dir.display(),
                tokenizer.vocab_size(),
                cfg.model.vocab()
            );
        }
        let ckpt = Self::init(cfg.model, tokenizer, device, 0)?;
        let weights = load_tensors(&dir.join("model.safetensors"), device)?;
        set_vars(&ckpt.varmap, &weights, &dir.join("model.safetensors"))?;
        Ok(ckpt)
    }

    /// Writes the files needed to evaluate and sample.
    pub fn save_model(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let vars: HashMap<String, Tensor> =
            self.varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        save_tensors(&vars, &dir.join("model.safetensors"))?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        atomic_write_json(&dir.join("config.json"), &CheckpointConfig { format_version: FORMAT_VERSION, model: self.config.clone() })
    }

    /// Parameters by name, in a stable order.
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        let mut v: Vec<_> = self.varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn num_params(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

/// Copies `weights` into the model's variables, insisting on the same names and shapes.
pub fn set_vars(varmap: &VarMap, weights: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let t = weights.get(name).ok_or_else(|| {
            anyhow!("{}: has no tensor {name}: the weights belong to another model than config.json says", path.display())
        })?;
        if t.dims() != var.dims() {
            bail!("{}: tensor {name} has shape {:?}, config.json implies {:?}", path.display(), t.dims(), var.dims());
        }
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    if let Some(extra) = weights.keys().find(|k| !data.contains_key(*k)) {
        bail!("{}: unexpected tensor {extra}: the weights belong to another model", path.display());
    }
    Ok(())
}

pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        bail!("{}: missing", path.display());
    }
    candle_core::safetensors::load(path, device)
        .map_err(|e| anyhow!("{}: corrupt or not a safetensors file ({e})", path.display()))
}

pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = temp_sibling(path);
    let cpu: HashMap<String, Tensor> =
        tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    candle_core::safetensors::save(&cpu, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ok();
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Saves the resumable part: optimizer moments and carried state, then `train_state.json` last.
pub fn save_training(dir: &Path, optimizer: HashMap<String, Tensor>, carry: Vec<(String, Tensor)>, state: &TrainState) -> Result<()> {
    let mut all = optimizer;
    for (k, t) in carry {
        all.insert(format!("carry.{k}"), t);
    }
    all.insert("step".into(), Tensor::new(&[state.step as f64], &Device::Cpu)?);
    save_tensors(&all, &dir.join("optimizer.safetensors"))?;
    atomic_write_json(&dir.join("train_state.json"), state)
}

/// Loads what `save_training` wrote: (optimizer moments, carried state, train state).
pub fn load_training(dir: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, HashMap<String, Tensor>, TrainState)> {
    let state_path = dir.join("train_state.json");
    if !state_path.exists() {
        bail!("{}: no train_state.json, so there is nothing to resume (a `best/` or sample-only checkpoint?)", dir.display());
    }
    let state: TrainState = read_json(&state_path)?;
    let mut tensors = load_tensors(&dir.join("optimizer.safetensors"), device)?;
    let step = tensors.remove("step").map(|t| t.to_vec1::<f64>()).transpose()?.and_then(|v| v.first().copied());
    if step != Some(state.step as f64) {
        bail!("{}: optimizer.safetensors and train_state.json are from different steps; the checkpoint is torn", dir.display());
    }
    let (carry, optimizer): (HashMap<_, _>, HashMap<_, _>) = tensors.into_iter().partition(|(k, _)| k.starts_with("carry."));
    let carry = carry.into_iter().map(|(k, t)| (k["carry.".len()..].to_string(), t)).collect();
    Ok((optimizer, carry, state))
}
