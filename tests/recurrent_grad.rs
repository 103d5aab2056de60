//! The fused CPU recurrent op against the op-level reference: values of outputs and final state, and
//! gradients of every parameter, of the input and of the initial state, for each cell, with and
//! without per-sequence lengths. Error measure: max |fused − reference| / max |reference| per tensor.

use candle_core::{Device, Tensor, Var};
use gen::nn::recurrent::{Backend, Cell, Recurrent, State, Steps};
use gen::rng::Rng;

const TOL: f32 = 1e-4;
const CELLS: [Cell; 3] = [Cell::Lstm, Cell::Gru, Cell::Rnn];

fn rand_tensor(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.range(-scale, scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn var(rng: &mut Rng, shape: &[usize], scale: f64) -> Var {
    Var::from_tensor(&rand_tensor(rng, shape, scale)).unwrap()
}

/// A layer whose parameters are `Var`s, drawn like PyTorch's init (scaled up a bit so gates saturate
/// somewhere and the test is not all-linear).
fn layer(rng: &mut Rng, cell: Cell, f: usize, h: usize) -> (Recurrent, Vec<Var>) {
    let g = cell.gates() * h;
    let k = 1.5 / (h as f64).sqrt();
    let vars = vec![var(rng, &[g, f], k), var(rng, &[g, h], k), var(rng, &[g], k), var(rng, &[g], k)];
    let l = Recurrent {
        cell,
        input_size: f,
        hidden_size: h,
        w_ih: vars[0].as_tensor().clone(),
        w_hh: vars[1].as_tensor().clone(),
        b_ih: vars[2].as_tensor().clone(),
        b_hh: vars[3].as_tensor().clone(),
    };
    (l, vars)
}

fn state(rng: &mut Rng, cell: Cell, b: usize, h: usize) -> (State, Vec<Var>) {
    let mut vars = vec![var(rng, &[b, h], 0.8)];
    if cell == Cell::Lstm {
        vars.push(var(rng, &[b, h], 0.8));
    }
    let s = State { h: vars[0].as_tensor().clone(), c: vars.get(1).map(|v| v.as_tensor().clone()) };
    (s, vars)
}

fn rel_err(a: &Tensor, r: &Tensor) -> f32 {
    assert_eq!(a.dims(), r.dims());
    let diff = (a - r).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = r.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale.max(1e-12)
}

/// Scalar loss touching every output: Σ y⊙Ry + Σ h⊙Rh (+ Σ c⊙Rc), with fixed random weights.
fn loss(y: &Tensor, s: &State, probes: &[Tensor]) -> Tensor {
    let mut l = (y * &probes[0]).unwrap().sum_all().unwrap();
    l = (l + (&s.h * &probes[1]).unwrap().sum_all().unwrap()).unwrap();
    if let Some(c) = &s.c {
        l = (l + (c * &probes[2]).unwrap().sum_all().unwrap()).unwrap();
    }
    l
}

fn probes(rng: &mut Rng, b: usize, t: usize, h: usize) -> Vec<Tensor> {
    vec![rand_tensor(rng, &[b, t, h], 1.0), rand_tensor(rng, &[b, h], 1.0), rand_tensor(rng, &[b, h], 1.0)]
}

/// Runs `run` with both backends and compares the returned tensors and the gradients of `vars`.
fn compare(what: &str, vars: &[(&str, &Var)], run: impl Fn(Backend) -> (Vec<Tensor>, Tensor)) {
    let mut results = Vec::new();
    for backend in [Backend::Fused, Backend::Reference] {
        let (values, l) = run(backend);
        let grads = l.backward().unwrap();
        let gs: Vec<Tensor> = vars
            .iter()
            .map(|(name, v)| grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{what}: no gradient for {name}")).clone())
            .collect();
        results.push((values, gs));
    }
    let ((fv, fg), (rv, rg)) = (&results[0], &results[1]);
    for (i, (a, r)) in fv.iter().zip(rv).enumerate() {
        let e = rel_err(a, r);
        assert!(e <= TOL, "{what}: value {i} differs, rel. error {e:e}");
    }
    for ((name, _), (a, r)) in vars.iter().zip(fg.iter().zip(rg)) {
        let e = rel_err(a, r);
        assert!(e <= TOL, "{what}: gradient of {name} differs, rel. error {e:e}");
    }
}

/// Resets for a `[5, 8]` batch: at the first step, mid-sequence, twice in a row, and at the last step.
fn some_resets() -> Vec<bool> {
    let at = [(0, 0), (0, 5), (1, 3), (1, 4), (2, 7), (4, 1)];
    (0..5 * 8).map(|i| at.contains(&(i / 8, i % 8))).collect()
}

fn check_cell(cell: Cell, lengths: Option<&[usize]>, resets: Option<&[bool]>) {
    let (b, t, f, h) = (5, 8, 5, 7);
    let mut rng = Rng::new(17 + cell.gates() as u64 + lengths.is_some() as u64 * 100 + resets.is_some() as u64 * 7);
    let (l, params) = layer(&mut rng, cell, f, h);
    let (s0, svars) = state(&mut rng, cell, b, h);
    let x = var(&mut rng, &[b, t, f], 1.0);
    let p = probes(&mut rng, b, t, h);
    let names = ["w_ih", "w_hh", "b_ih", "b_hh", "x", "h0", "c0"];
    let all: Vec<&Var> = params.iter().chain([&x]).chain(&svars).collect();
    let vars: Vec<(&str, &Var)> = names.iter().copied().zip(all).collect();
    let what = format!("{} lengths={lengths:?} resets={}", cell.name(), resets.is_some());
    compare(&what, &vars, |backend| {
        let (y, s) = l.forward_with(backend, x.as_tensor(), Some(&s0), Steps { lengths, resets }).unwrap();
        let lo = loss(&y, &s, &p);
        let mut vals = vec![y, s.h.clone()];
        vals.extend(s.c.clone());
        (vals, lo)
    });
}

#[test]
fn lstm_matches_reference() {
    check_cell(Cell::Lstm, None, None);
    check_cell(Cell::Lstm, Some(&[8, 1, 5, 0, 3]), None);
    check_cell(Cell::Lstm, None, Some(&some_resets()));
    check_cell(Cell::Lstm, Some(&[8, 1, 5, 0, 3]), Some(&some_resets()));
}

#[test]
fn gru_matches_reference() {
    check_cell(Cell::Gru, None, None);
    check_cell(Cell::Gru, Some(&[3, 8, 1, 6, 0]), None);
    check_cell(Cell::Gru, None, Some(&some_resets()));
    check_cell(Cell::Gru, Some(&[3, 8, 1, 6, 0]), Some(&some_resets()));
}

#[test]
fn rnn_matches_reference() {
    check_cell(Cell::Rnn, None, None);
    check_cell(Cell::Rnn, Some(&[2, 7, 8, 0, 1]), None);
    check_cell(Cell::Rnn, None, Some(&some_resets()));
    check_cell(Cell::Rnn, Some(&[2, 7, 8, 0, 1]), Some(&some_resets()));
}

#[test]
fn two_layer_stack_matches_reference() {
    let (b, t, f, h1, h2) = (4, 9, 5, 8, 6);
    let lengths: &[usize] = &[9, 4, 1, 7];
    for cell in CELLS {
        let mut rng = Rng::new(99 + cell.gates() as u64);
        let (l1, p1) = layer(&mut rng, cell, f, h1);
        let (l2, p2) = layer(&mut rng, cell, h1, h2);
        let x = var(&mut rng, &[b, t, f], 1.0);
        let p = probes(&mut rng, b, t, h2);
        let mut vars: Vec<(&str, &Var)> = vec![("x", &x)];
        for (i, v) in p1.iter().enumerate() {
            vars.push((["l0.w_ih", "l0.w_hh", "l0.b_ih", "l0.b_hh"][i], v));
        }
        for (i, v) in p2.iter().enumerate() {
            vars.push((["l1.w_ih", "l1.w_hh", "l1.b_ih", "l1.b_hh"][i], v));
        }
        compare(&format!("{} stack", cell.name()), &vars, |backend| {
            let (y1, s1) = l1.forward_with(backend, x.as_tensor(), None, Steps { lengths: Some(lengths), resets: None }).unwrap();
            let (y2, s2) = l2.forward_with(backend, &y1, None, Steps { lengths: Some(lengths), resets: None }).unwrap();
            // Both layers' final states enter the loss, so gradients flow through every output.
            let mut lo = loss(&y2, &s2, &p);
            lo = (lo + s1.h.sum_all().unwrap()).unwrap();
            let mut vals = vec![y2, s2.h.clone(), s1.h.clone()];
            vals.extend(s2.c.clone());
            (vals, lo)
        });
    }
}

#[test]
fn padded_batch_equals_each_sequence_alone() {
    let (b, t, f, h) = (4, 7, 5, 6);
    let lengths = [7usize, 3, 1, 5];
    for cell in CELLS {
        let mut rng = Rng::new(5 + cell.gates() as u64);
        let (l, _) = layer(&mut rng, cell, f, h);
        let (s0, _) = state(&mut rng, cell, b, h);
        let x = rand_tensor(&mut rng, &[b, t, f], 1.0);
        let (y, s) = l.forward_with(Backend::Fused, &x, Some(&s0), Steps { lengths: Some(&lengths), resets: None }).unwrap();
        for (i, &n) in lengths.iter().enumerate() {
            let xi = x.narrow(0, i, 1).unwrap().narrow(1, 0, n).unwrap();
            let si = State {
                h: s0.h.narrow(0, i, 1).unwrap(),
                c: s0.c.as_ref().map(|c| c.narrow(0, i, 1).unwrap()),
            };
            let (yi, sa) = l.forward_with(Backend::Fused, &xi, Some(&si), Steps::default()).unwrap();
            let what = format!("{} sequence {i}", cell.name());
            assert!(rel_err(&s.h.narrow(0, i, 1).unwrap(), &sa.h) <= TOL, "{what}: final h");
            if let (Some(c), Some(ca)) = (&s.c, &sa.c) {
                assert!(rel_err(&c.narrow(0, i, 1).unwrap(), ca) <= TOL, "{what}: final c");
            }
            let yb = y.narrow(0, i, 1).unwrap();
            assert!(rel_err(&yb.narrow(1, 0, n).unwrap(), &yi) <= TOL, "{what}: outputs");
            if n < t {
                let pad = yb.narrow(1, n, t - n).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(pad.to_scalar::<f32>().unwrap(), 0.0, "{what}: padding outputs must be zero");
            }
        }
    }
}

#[test]
fn a_reset_restarts_from_the_zero_state() {
    // Resetting before step k must equal running steps k.. alone from zeros, and the final state must
    // not depend on anything before the reset.
    let (t, f, h, k) = (7, 4, 5, 3);
    for cell in CELLS {
        for backend in [Backend::Fused, Backend::Reference] {
            let mut rng = Rng::new(41 + cell.gates() as u64);
            let (l, _) = layer(&mut rng, cell, f, h);
            let (s0, _) = state(&mut rng, cell, 1, h);
            let x = rand_tensor(&mut rng, &[1, t, f], 1.0);
            let resets: Vec<bool> = (0..t).map(|i| i == k).collect();
            let (y, s) = l.forward_with(backend, &x, Some(&s0), Steps { lengths: None, resets: Some(&resets) }).unwrap();
            let tail = x.narrow(1, k, t - k).unwrap();
            let (y_alone, s_alone) = l.forward_with(backend, &tail, None, Steps::default()).unwrap();
            let what = format!("{} {backend:?}", cell.name());
            assert!(rel_err(&y.narrow(1, k, t - k).unwrap(), &y_alone) <= TOL, "{what}: outputs after the reset");
            assert!(rel_err(&s.h, &s_alone.h) <= TOL, "{what}: final state");
            let (y_plain, _) = l.forward_with(backend, &x, Some(&s0), Steps::default()).unwrap();
            assert!(rel_err(&y.narrow(1, 0, k).unwrap(), &y_plain.narrow(1, 0, k).unwrap()) <= TOL, "{what}: outputs before");
        }
    }
}

#[test]
fn auto_runs_fused_on_cpu_and_agrees() {
    let mut rng = Rng::new(3);
    let (l, _) = layer(&mut rng, Cell::Lstm, 5, 6);
    let x = rand_tensor(&mut rng, &[2, 4, 5], 1.0);
    let (ya, _) = l.forward(&x, None, None).unwrap();
    let (yf, _) = l.forward_with(Backend::Fused, &x, None, Steps::default()).unwrap();
    let (yr, _) = l.forward_with(Backend::Reference, &x, None, Steps::default()).unwrap();
    assert_eq!(rel_err(&ya, &yf), 0.0, "Auto should take the fused path on CPU f32");
    assert!(rel_err(&yf, &yr) <= TOL);
}
