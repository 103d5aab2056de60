//! Progress on stderr: an indicatif bar when stderr is a terminal, plain log lines otherwise
//! (logs, CI, `nohup`), so stdout stays free for results.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Bar counts seconds (time budget) rather than steps.
    by_time: bool,
    rate: f64,
}

impl Progress {
    pub fn new(total_steps: Option<u64>, time: Option<Duration>, step: u64, elapsed_s: f64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None, by_time: false, rate: 0.0 };
        }
        let (len, pos, by_time) = match (total_steps, time) {
            (Some(t), _) => (t, step, false),
            (None, Some(t)) => (t.as_secs(), elapsed_s as u64, true),
            (None, None) => (0, step, false),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template = if by_time {
            "{elapsed_precise} [{bar:30}] {percent}% of time budget, step {msg}"
        } else {
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {msg}, eta {eta}"
        };
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
        bar.set_position(pos);
        Self { bar: Some(bar), by_time, rate: 0.0 }
    }

    pub fn set_rate(&mut self, chars_per_s: f64) {
        self.rate = chars_per_s;
    }

    pub fn step(&mut self, step: u64, bpc: f64, elapsed_s: f64) {
        if let Some(bar) = &self.bar {
            let msg = format!("{step} loss {bpc:.3} bpc, {:.0} chars/s", self.rate);
            bar.set_message(msg);
            bar.set_position(if self.by_time { elapsed_s as u64 } else { step });
        }
    }

    /// A log line (plain mode only: the bar already shows it).
    pub fn log_step(&self, step: u64, total: Option<u64>, train_bpc: f64, lr: f64, cps: f64, elapsed_s: f64) {
        if self.bar.is_none() {
            let of = total.map(|t| format!("/{t}")).unwrap_or_default();
            eprintln!("step {step}{of}  train bpc {train_bpc:.4}  lr {lr:.2e}  {cps:.0} chars/s  {elapsed_s:.0}s");
        }
    }

    /// A message in both modes.
    pub fn log(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
