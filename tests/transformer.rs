//! Transformer behaviour: configuration errors, causal masking, fused vs op-level kernels, and KV-cache
//! decoding against the full forward (including after the cache slides past the context).
//!
//! Relative error here is `max|a − b| / max|b|` over a whole tensor.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gen::model::transformer::{Kernels, Transformer, TransformerConfig};

fn cfg() -> TransformerConfig {
    TransformerConfig { vocab: 17, dim: 24, layers: 2, heads: 3, context: 10, dropout: 0.0 }
}

fn model(cfg: &TransformerConfig, kernels: Kernels) -> (VarMap, Transformer) {
    let vm = VarMap::new();
    let m = Transformer::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    (vm, m.with_kernels(kernels).unwrap())
}

fn tokens(n: usize, vocab: usize, seed: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 31 + seed * 7 + (i * i) / 3) % vocab) as u32).collect()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale.max(1e-12)
}

#[test]
fn bad_configs_are_refused_with_one_line_messages() {
    let mut c = cfg();
    c.heads = 5;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("--heads 5 must divide --dim 24") && !e.contains('\n'), "{e}");
    let mut c = cfg();
    c.context = 0;
    assert!(c.validate().unwrap_err().to_string().contains("--context"));
    let mut c = cfg();
    c.dropout = 1.0;
    assert!(c.validate().unwrap_err().to_string().contains("--dropout"));
    assert!(cfg().validate().is_ok());
}

#[test]
fn forward_rejects_windows_longer_than_the_context() {
    let c = cfg();
    let (_vm, m) = model(&c, Kernels::Fused);
    let x = Tensor::from_vec(tokens(c.context + 1, c.vocab, 0), (1, c.context + 1), &Device::Cpu).unwrap();
    assert!(m.forward(&x, None).is_err());
}

#[test]
fn step_rejects_bad_tokens_and_batch_sizes_and_accepts_empty_batches() {
    let c = cfg();
    for kernels in [Kernels::Fused, Kernels::Ops] {
        let (_vm, m) = model(&c, kernels);
        let mut cache = m.new_cache(2);
        let bad = Tensor::new(&[0u32, c.vocab as u32], &Device::Cpu).unwrap();
        let e = m.step(&bad, &mut cache).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{kernels:?}: {e}");
        assert!(m.step(&Tensor::new(&[1u32], &Device::Cpu).unwrap(), &mut cache).is_err());
        assert_eq!(cache.len(), 0);
        // An empty batch is not an error.
        let none = Tensor::zeros((0, 3), DType::U32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&none, None).unwrap().dims(), &[0, 3, c.vocab]);
        let mut empty = m.new_cache(0);
        let step = m.step(&Tensor::zeros(0, DType::U32, &Device::Cpu).unwrap(), &mut empty).unwrap();
        assert_eq!(step.dims(), &[0, c.vocab]);
    }
}

#[test]
fn changing_a_future_token_leaves_earlier_logits_unchanged() {
    let c = cfg();
    for kernels in [Kernels::Fused, Kernels::Ops] {
        let (_vm, m) = model(&c, kernels);
        let t = c.context;
        let a = tokens(2 * t, c.vocab, 1);
        let p = 6;
        let mut b = a.clone();
        b[p] = (b[p] + 1) % c.vocab as u32; // stream 0
        b[t + p] = (b[t + p] + 5) % c.vocab as u32; // stream 1
        let la = m.forward(&Tensor::from_vec(a, (2, t), &Device::Cpu).unwrap(), None).unwrap();
        let lb = m.forward(&Tensor::from_vec(b, (2, t), &Device::Cpu).unwrap(), None).unwrap();
        let before = (la.narrow(1, 0, p).unwrap() - lb.narrow(1, 0, p).unwrap()).unwrap();
        let after = (la.narrow(1, p, t - p).unwrap() - lb.narrow(1, p, t - p).unwrap()).unwrap();
        let max = |x: &Tensor| x.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(max(&before), 0.0, "{kernels:?}: a future token leaked into earlier logits");
        assert!(max(&after) > 0.0, "{kernels:?}: the changed token had no effect");
    }
}

#[test]
fn fused_kernels_match_the_op_level_model_in_values_and_gradients() {
    let c = cfg();
    let (vm, fused) = model(&c, Kernels::Fused);
    let ops = fused.clone().with_kernels(Kernels::Ops).unwrap();
    let (b, t) = (3, c.context);
    let all = Tensor::from_vec(tokens(b * (t + 1), c.vocab, 2), (b, t + 1), &Device::Cpu).unwrap();
    let (x, y) = (all.narrow(1, 0, t).unwrap(), all.narrow(1, 1, t).unwrap().flatten_all().unwrap());
    let run = |m: &Transformer| {
        let logits = m.forward(&x, None).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits.reshape((b * t, c.vocab)).unwrap(), &y).unwrap();
        (logits, loss.backward().unwrap())
    };
    let (lf, gf) = run(&fused);
    let (lo, go) = run(&ops);
    assert!(rel_err(&lf, &lo) <= 1e-4, "logits rel err {}", rel_err(&lf, &lo));
    for (name, var) in vm.data().lock().unwrap().iter() {
        let (a, b) = (gf.get(var.as_tensor()).unwrap(), go.get(var.as_tensor()).unwrap());
        assert!(rel_err(a, b) <= 1e-4, "gradient of {name}: rel err {}", rel_err(a, b));
    }
}

/// Each `step` returns the logits `forward` gives for the last position of `cache.window()` — the tokens
/// the cache encodes. Before the context fills that window is the whole history; afterwards it is the
/// last `context/2` tokens kept at the slide plus those fed since.
#[test]
fn kv_cache_steps_reproduce_forward_including_after_sliding() {
    // Context 1 keeps nothing when it slides; 2 keeps one token; 10 the general case.
    for context in [1, 2, 10] {
        let c = TransformerConfig { context, ..cfg() };
        for kernels in [Kernels::Fused, Kernels::Ops] {
            check_cache(&c, kernels);
        }
    }
}

fn check_cache(c: &TransformerConfig, kernels: Kernels) {
    let (_vm, m) = model(c, kernels);
    let batch = 2;
    let n = 3 * c.context + 3;
    let streams: Vec<Vec<u32>> = (0..batch).map(|s| tokens(n, c.vocab, 10 + s)).collect();
    let mut cache = m.new_cache(batch);
    for i in 0..n {
        let ids: Vec<u32> = streams.iter().map(|s| s[i]).collect();
        let logits = m.step(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap(), &mut cache).unwrap();
        let len = cache.len();
        let expect_len =
            if i < c.context { i + 1 } else { c.context / 2 + 1 + (i - c.context) % (c.context - c.context / 2) };
        assert_eq!(len, expect_len, "cache length after {} tokens", i + 1);
        for (s, stream) in streams.iter().enumerate() {
            assert_eq!(cache.window(s), &stream[i + 1 - len..=i], "window of stream {s}");
        }
        let window: Vec<u32> = (0..batch).flat_map(|s| cache.window(s).to_vec()).collect();
        let full = m.forward(&Tensor::from_vec(window, (batch, len), &Device::Cpu).unwrap(), None).unwrap();
        let last = full.narrow(1, len - 1, 1).unwrap().squeeze(1).unwrap();
        let err = rel_err(&logits, &last);
        assert!(
            err <= 1e-4,
            "{kernels:?}: context {}: step {i} (cache len {len}) differs from forward by {err}",
            c.context
        );
    }
}
