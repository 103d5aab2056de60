//! `--device cpu|cuda|cuda:N` to a candle device, with errors that say what to do.

use anyhow::{bail, Result};
use candle_core::Device;

pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("unknown device {spec:?}: use cpu, cuda or cuda:N"),
        },
        None => bail!("unknown device {spec:?}: use cpu, cuda or cuda:N"),
    };
    if !candle_core::utils::cuda_is_available() {
        bail!("--device cuda: this gen was built without CUDA; rebuild with `cargo build --release --features cuda`");
    }
    Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("--device {spec}: no usable CUDA GPU ({e})"))
}
