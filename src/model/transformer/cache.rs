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

use super::fast::{FastCache, Weights};
use super::{Kernels, LayerKv, Transformer};
use candle_core::{Result, Tensor};

/// Where the keys and values live.
enum Store {
    /// Tensors `[B, H, L, hd]` per layer, extended by candle ops (every device).
    Ops(Vec<LayerKv>),
    /// Plain f32 buffers and a snapshot of the weights (CPU, with the fused kernels).
    Fast(Box<FastCache>),
}

/// Per-stream decoding state for `Transformer::step`; all streams advance together.
///
/// On CPU the cache holds a copy of the weights taken by `new_cache`: make a new cache after the
/// parameters change.
pub struct KvCache {
    batch: usize,
    /// Positions currently cached (the same for every stream).
    len: usize,
    /// `[B][len]`: the tokens each stream's cache encodes, oldest first (re-encoded when sliding).
    windows: Vec<Vec<u32>>,
    store: Store,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.store {
            Store::Ops(_) => "ops",
            Store::Fast(_) => "fast",
        };
        f.debug_struct("KvCache").field("batch", &self.batch).field("len", &self.len).field("store", &kind).finish()
    }
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
        let fast = match self.kernels {
            // The snapshot only fails for non-f32 weights, which the op-level path still handles.
            Kernels::Fused => Weights::snapshot(self).ok(),
            Kernels::Ops => None,
        };
        let store = match fast {
            Some(w) => Store::Fast(Box::new(FastCache::new(w, batch))),
            None => Store::Ops(vec![None; self.cfg.layers]),
        };
        KvCache { batch, len: 0, windows: vec![Vec::new(); batch], store }
    }

    /// Feeds `tokens: [B]` (u32), one new token per stream, and returns the next-token logits `[B, vocab]`.
    pub fn step(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let ids = tokens.to_vec1::<u32>()?;
        if ids.len() != cache.batch {
            candle_core::bail!("the cache holds {} streams but step got {} tokens", cache.batch, ids.len());
        }
        if let Some(&t) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            candle_core::bail!("token {t} is outside the vocabulary of {}", self.cfg.vocab);
        }
        if cache.batch == 0 {
            return Tensor::zeros((0, self.cfg.vocab), self.embed.dtype(), self.embed.device());
        }
        if cache.len() == self.cfg.context {
            self.slide(cache)?;
        }
        self.extend(&ids, 1, cache)
    }

    /// Keeps the last `context / 2` tokens of every stream, re-encoded from position 0.
    fn slide(&self, cache: &mut KvCache) -> Result<()> {
        let keep = self.cfg.context / 2;
        let kept: Vec<u32> = cache.windows.iter().flat_map(|w| w[w.len() - keep..].to_vec()).collect();
        cache.windows.iter_mut().for_each(Vec::clear);
        cache.len = 0;
        if let Store::Ops(layers) = &mut cache.store {
            layers.iter_mut().for_each(|l| *l = None);
        }
        if keep > 0 {
            self.extend(&kept, keep, cache)?;
        }
        Ok(())
    }

    /// Appends `n` tokens per stream (`ids`: `[B][n]` row-major) to the cache and returns the logits
    /// after each stream's last one, `[B, vocab]`. The caller keeps `len + n ≤ context`.
    fn extend(&self, ids: &[u32], n: usize, cache: &mut KvCache) -> Result<Tensor> {
        let (b, offset, dev) = (cache.batch, cache.len, self.embed.device());
        let logits = match &mut cache.store {
            Store::Fast(fast) => Tensor::from_vec(fast.extend(ids, n, offset), (b, self.cfg.vocab), dev)?,
            Store::Ops(layers) => {
                let tokens = Tensor::from_slice(ids, (b, n), dev)?;
                let mut x = self.embed_at(&tokens, offset)?;
                for (block, kv) in self.blocks.iter().zip(layers.iter_mut()) {
                    x = block.forward(self.kernels, &x, b, self.cfg.heads, None, Some(kv))?;
                }
                let last = x.reshape((b, n, self.cfg.dim))?.narrow(1, n - 1, 1)?.squeeze(1)?;
                self.logits(&last)?
            }
        };
        for (w, row) in cache.windows.iter_mut().zip(ids.chunks(n)) {
            w.extend_from_slice(row);
        }
        cache.len += n;
        Ok(logits)
    }
}
