//! Learning-rate schedule: linear warm-up, then cosine decay to `min_ratio · lr` at `total` steps.

#[derive(Clone, Debug)]
pub struct Schedule {
    pub lr: f64,
    pub warmup: u64,
    /// Step at which the cosine reaches its floor; `None` (a time or patience budget) keeps `lr` flat.
    pub total: Option<u64>,
    pub min_ratio: f64,
}

impl Schedule {
    /// The rate at `step` with the cosine driven by a known fraction of the budget (time budgets).
    pub fn at_progress(&self, step: u64, progress: f64) -> f64 {
        if self.warmup > 0 && step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let p = progress.clamp(0.0, 1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        self.lr * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }

    pub fn at(&self, step: u64) -> f64 {
        if self.warmup > 0 && step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let Some(total) = self.total else { return self.lr };
        if step >= total || total <= self.warmup {
            return self.lr * self.min_ratio;
        }
        let progress = (step - self.warmup) as f64 / (total - self.warmup) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn warms_up_then_decays() {
        let s = Schedule { lr: 1.0, warmup: 10, total: Some(110), min_ratio: 0.1 };
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.55).abs() < 1e-12);
        assert!((s.at(110) - 0.1).abs() < 1e-12);
        assert!(s.at(30) > s.at(80));
    }
}
