//! Batches for training: B parallel streams over the shuffled training text, cut into windows of
//! `seq` tokens. Window w of stream b continues where window w−1 of stream b ended, so an RNN can
//! carry its state across windows (truncated BPTT).
//!
//! Each epoch shuffles the recipe order with an RNG derived from (seed, epoch), so the position
//! (epoch, window) alone determines a batch and a resumed run sees the same data.

use crate::rng::Rng;
use crate::tokenizer::EOR_ID;
use anyhow::{bail, Result};

pub struct Streams {
    docs: Vec<Vec<u32>>,
    batch: usize,
    seq: usize,
    seed: u64,
    /// The epoch whose concatenated text `text` holds.
    cached_epoch: Option<u64>,
    text: Vec<u32>,
    stream_len: usize,
}

impl Streams {
    pub fn new(docs: Vec<Vec<u32>>, batch: usize, seq: usize, seed: u64) -> Result<Self> {
        if seq < 2 {
            bail!("--seq must be at least 2, got {seq}");
        }
        if batch == 0 {
            bail!("--batch must be at least 1");
        }
        let total: usize = docs.iter().map(|d| d.len() + 1).sum::<usize>() + 1;
        let stream_len = total / batch;
        if stream_len < seq + 1 {
            bail!(
                "--batch {batch} × --seq {seq} needs at least {} training tokens, the training split has {total}; lower --batch or --seq",
                batch * (seq + 1)
            );
        }
        Ok(Self { docs, batch, seq, seed, cached_epoch: None, text: Vec::new(), stream_len })
    }

    pub fn windows_per_epoch(&self) -> u64 {
        ((self.stream_len - 1) / self.seq) as u64
    }

    pub fn tokens_per_epoch(&self) -> u64 {
        self.windows_per_epoch() * (self.batch * self.seq) as u64
    }

    fn load_epoch(&mut self, epoch: u64) {
        if self.cached_epoch == Some(epoch) {
            return;
        }
        let mut order: Vec<usize> = (0..self.docs.len()).collect();
        Rng::derive(self.seed, 0x5eed_0000 + epoch).shuffle(&mut order);
        self.text.clear();
        // Every recipe is preceded by <eor>, the first input eval scores it from.
        self.text.push(EOR_ID);
        for i in order {
            self.text.extend_from_slice(&self.docs[i]);
            self.text.push(EOR_ID);
        }
        self.cached_epoch = Some(epoch);
    }

    /// Inputs and targets, each `batch × seq` row-major, of window `window` in `epoch`.
    pub fn batch(&mut self, epoch: u64, window: u64) -> (Vec<u32>, Vec<u32>) {
        self.load_epoch(epoch);
        let (b, t) = (self.batch, self.seq);
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for s in 0..b {
            let start = s * self.stream_len + window as usize * t;
            inputs.extend_from_slice(&self.text[start..start + t]);
            targets.extend_from_slice(&self.text[start + 1..start + t + 1]);
        }
        (inputs, targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_continue_each_stream() {
        let docs: Vec<Vec<u32>> = (0..20).map(|i| vec![2 + i; 5]).collect();
        let mut s = Streams::new(docs, 2, 4, 1).unwrap();
        let (i0, t0) = s.batch(0, 0);
        let (i1, _) = s.batch(0, 1);
        assert_eq!(&i0[1..4], &t0[0..3]);
        assert_eq!(i1[0], t0[3]); // stream 0, window 1 starts where window 0's targets end
        assert_eq!(s.batch(0, 1), s.batch(0, 1));
        assert_ne!(s.batch(0, 0), s.batch(1, 0)); // a new shuffle each epoch
        assert!(Streams::new(vec![vec![2; 3]], 4, 8, 0).is_err());
        assert!(Streams::new(vec![vec![2; 300]], 1, 1, 0).is_err());
    }
}
