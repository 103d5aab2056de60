//! A small pool of large f32 buffers for the fused kernels' per-call scratch and stash.
//!
//! Every training step needs the same tens of MB of scratch; fresh allocations of that size come
//! from mmap and cost a page fault plus a kernel page clear per 4 KiB on first touch (it showed as
//! ~15% of a step in profiles). Reusing buffers keeps those pages mapped.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers kept for reuse; enough for a few layers' stash plus backward scratch.
const MAX_POOLED: usize = 48;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// `n` f32s with unspecified (but initialized) contents; returned to the pool on drop.
pub struct Buf {
    v: Vec<f32>,
    n: usize,
}

impl Buf {
    /// A buffer of `n` elements whose old contents the caller overwrites before reading.
    pub fn take(n: usize) -> Buf {
        let mut pool = POOL.lock().unwrap();
        // Smallest pooled buffer that is large enough.
        let best = pool.iter().enumerate().filter(|(_, v)| v.len() >= n).min_by_key(|(_, v)| v.len()).map(|(i, _)| i);
        let v = match best {
            Some(i) => pool.swap_remove(i),
            None => vec![0.0; n],
        };
        Buf { v, n }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.v.len() < 4096 {
            return;
        }
        let mut pool = POOL.lock().unwrap();
        if pool.len() < MAX_POOLED {
            pool.push(std::mem::take(&mut self.v));
        }
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[..self.n]
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[..self.n]
    }
}
