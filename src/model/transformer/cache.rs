//! Incremental decoding with a key/value cache: each `step` feeds one new token per stream and costs
//! one position, not a re-run of the window.
//!
//! Sliding: positions are learned and absolute, so cached keys cannot simply shift when the window is
//! full (they were computed at their old positions). Instead, when a step arrives with the cache holding
//! `context` positions, the cache keeps the last `context / 2` tokens, re-encodes them at positions
//! `0..context/2`, and appends the new token after them. Re-encoding costs one batched forward every
//! `context/2` steps, and every step's logits are exactly the last row of `forward` over
//! `cache.window()` — the tokens the cache holds — so generation of any length never fails and never
//! sees a position it was not trained on.

use super::{LayerKv, Transformer};
use candle_core::{Result, Tensor};

/// Per-stream decoding state for `Transformer::step`; all streams advance together.
#[derive(Clone, Debug)]
pub struct KvCache {
    batch: usize,
    /// Positions currently cached (the same for every stream).
    len: usize,
    /// `[B][len]`: the tokens each stream's cache encodes, oldest first (re-encoded when sliding).
    windows: Vec<Vec<u32>>,
    layers: Vec<LayerKv>,
}

impl KvCache {
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Positions currently cached (the same for every stream).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens stream `b`'s cache encodes: the last `step`'s logits equal `forward` over these.
    pub fn window(&self, b: usize) -> &[u32] {
        &self.windows[b]
    }
}

impl Transformer {
    pub fn new_cache(&self, batch: usize) -> KvCache {
        KvCache { batch, len: 0, windows: vec![Vec::new(); batch], layers: vec![None; self.cfg.layers] }
    }

    /// Feeds `tokens: [B]` (u32), one new token per stream, and returns the next-token logits `[B, vocab]`.
    pub fn step(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let ids = tokens.to_vec1::<u32>()?;
        if ids.len() != cache.batch {
            candle_core::bail!("the cache holds {} streams but step got {} tokens", cache.batch, ids.len());
        }
        if cache.len() == self.cfg.context {
            self.slide(cache)?;
        }
        let logits = self.extend(&ids, 1, cache)?;
        logits.squeeze(1)
    }

    /// Keeps the last `context / 2` tokens of every stream, re-encoded from position 0.
    fn slide(&self, cache: &mut KvCache) -> Result<()> {
        let keep = self.cfg.context / 2;
        let kept: Vec<u32> = cache.windows.iter().flat_map(|w| w[w.len() - keep..].to_vec()).collect();
        cache.windows.iter_mut().for_each(Vec::clear);
        cache.len = 0;
        cache.layers.iter_mut().for_each(|l| *l = None);
        if keep > 0 {
            self.extend(&kept, keep, cache)?;
        }
        Ok(())
    }

    /// Appends `n` tokens per stream (`ids`: `[B][n]` row-major) to the cache and returns their logits
    /// `[B, n, vocab]`. The caller keeps `len + n ≤ context`.
    fn extend(&self, ids: &[u32], n: usize, cache: &mut KvCache) -> Result<Tensor> {
        let b = cache.batch;
        let offset = cache.len();
        let tokens = Tensor::from_slice(ids, (b, n), self.embed.device())?;
        let mut x = self.embed_at(&tokens, offset)?;
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = block.forward(self.kernels, &x, b, self.cfg.heads, None, Some(kv))?;
        }
        for (w, row) in cache.windows.iter_mut().zip(ids.chunks(n)) {
            w.extend_from_slice(row);
        }
        cache.len += n;
        self.logits(&x)?.reshape((b, n, self.cfg.vocab))
    }
}
