//! Every transformer parameter must receive a non-zero gradient: candle kernels such as
//! `candle_nn::ops::layer_norm` or `softmax_last_dim` silently cut the graph, and a model built on them
//! trains only partly without any error.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gen::model::transformer::{Kernels, Transformer, TransformerConfig};

fn check(kernels: Kernels) {
    let cfg = TransformerConfig { vocab: 13, dim: 16, layers: 2, heads: 4, context: 12, dropout: 0.1 };
    let vm = VarMap::new();
    let model = Transformer::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
        .unwrap()
        .with_kernels(kernels)
        .unwrap();
    let (b, t) = (3, cfg.context);
    let ids: Vec<u32> = (0..b * (t + 1)).map(|i| ((i * 7 + i / 5) % cfg.vocab) as u32).collect();
    let all = Tensor::from_vec(ids, (b, t + 1), &Device::Cpu).unwrap();
    let (x, y) = (all.narrow(1, 0, t).unwrap(), all.narrow(1, 1, t).unwrap());
    let mut rng = gen::rng::Rng::new(5);
    let logits = model.forward(&x, Some(&mut rng)).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits.reshape((b * t, cfg.vocab)).unwrap(), &y.flatten_all().unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();

    let vars = vm.data().lock().unwrap();
    let count: usize = vars.values().map(|v| v.elem_count()).sum();
    assert_eq!(count, cfg.parameters(), "parameter count");
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    for name in names {
        let var = &vars[&name];
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{kernels:?}: no gradient for {name}"));
        let mag = g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(mag > 0.0 && mag.is_finite(), "{kernels:?}: gradient of {name} is {mag}");
    }
}

#[test]
fn every_parameter_gets_a_gradient_fused() {
    check(Kernels::Fused);
}

#[test]
fn every_parameter_gets_a_gradient_ops() {
    check(Kernels::Ops);
}
