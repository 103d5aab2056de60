//! A second thread for batch-1 generation. A step is a handful of matrix–vector products of ~0.1 ms
//! each, bound by how fast one core can pull weights from cache; splitting each product's rows with a
//! second core nearly doubles that. A thread pool's wake-up (rayon's is tens of microseconds) costs
//! more than it saves at this size, so the helper spins on an atomic counter while a generation runs
//! and parks after a short idle spell. Either thread may claim the helper's half: when the helper is
//! slow to pick it up (a busy machine), the caller does it itself, so a split step is never much
//! slower than an unsplit one.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the helper spins for the next job before it parks.
const SPIN: Duration = Duration::from_micros(500);

type Job = *const (dyn Fn() + Sync);

struct Shared {
    /// Jobs posted; job n is claimed by whichever thread moves `claimed` from n − 1 to n first, and
    /// `done` reaches n when it has run.
    posted: AtomicU64,
    claimed: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is written only by the owner before it publishes `posted` (Release) and read only by the
// helper after it observes that value (Acquire); the owner does not touch it again until `done` says
// the helper has finished with it.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct Helper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// A helper thread, or `None` on a single-core machine (or with `RAYON_NUM_THREADS=1`).
    pub fn spawn() -> Option<Helper> {
        if rayon::current_num_threads() < 2 {
            return None;
        }
        let shared = Arc::new(Shared {
            posted: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            job: UnsafeCell::new(None),
        });
        let s = shared.clone();
        let thread = thread::Builder::new().name("gen-sample-helper".into()).spawn(move || work(&s)).ok()?;
        Some(Helper { shared, thread: Some(thread) })
    }

    /// Runs `theirs` on the helper thread and `mine` on this one, and returns when both are done.
    pub fn join(&self, mine: impl FnOnce(), theirs: &(dyn Fn() + Sync)) {
        let s = &self.shared;
        let n = s.done.load(Ordering::Relaxed) + 1;
        // SAFETY: see `Shared`. The pointer's lifetime is erased; this function does not return before
        // the helper reports job n done, so `theirs` outlives every use.
        unsafe {
            let job: &'static (dyn Fn() + Sync) = std::mem::transmute(theirs);
            *s.job.get() = Some(job as Job);
        }
        s.posted.store(n, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        mine();
        if s.claimed.compare_exchange(n - 1, n, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            theirs();
            s.done.store(n, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != n {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                thread::yield_now(); // the helper was descheduled mid-job
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn work(s: &Shared) {
    let mut seen = 0;
    let mut idle_since = Instant::now();
    loop {
        let posted = s.posted.load(Ordering::Acquire);
        if posted != seen {
            if s.claimed.compare_exchange(posted - 1, posted, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // SAFETY: the owner wrote the job before publishing `posted`, and keeps it alive until
                // `done` says it has run.
                if let Some(job) = unsafe { *s.job.get() } {
                    unsafe { (*job)() };
                }
                s.done.store(posted, Ordering::Release);
            }
            seen = posted;
            idle_since = Instant::now();
        } else if s.stop.load(Ordering::Acquire) {
            return;
        } else if idle_since.elapsed() < SPIN {
            std::hint::spin_loop();
        } else {
            // Woken by the next `join` or by drop; the timeout only guards against a lost wake-up.
            thread::park_timeout(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_both_halves_every_time() {
        let Some(h) = Helper::spawn() else { return };
        let count = AtomicUsize::new(0);
        for i in 0..2000 {
            let mut mine = 0;
            h.join(|| mine = i, &|| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(mine, i);
            assert_eq!(count.load(Ordering::Relaxed), i + 1);
            if i % 500 == 0 {
                thread::sleep(SPIN * 2); // let the helper park, and wake it again
            }
        }
    }
}
