//! Keeping the other threads of a rayon pool awake through a forward step.
//!
//! A forward step is a few hundred parallel regions (each matrix product, the attention,
//! RoPE) separated by short serial stretches (norms, the gated activation, residual adds).
//! Rayon parks an idle worker on a futex after a few dozen rounds without work, so every
//! region began by waking it again: on this project's 2-core VM that was about 210 context
//! switches per decoding step of 16 sequences and a third of the second core left idle
//! (SmolLM2 Q4_1, 16 sequences: 1.37x the one-thread rate on two threads, against 1.78x for
//! a prompt). llama.cpp's threads spin between operations for the same reason.
//!
//! [`KeepAwake`] runs a job on every other worker of the current pool that takes the pool's
//! work as it appears (`rayon::yield_now`) and otherwise spins, until the guard is dropped.
//! A broadcast job can only run on its own thread, so the calling thread never picks up a
//! spinner meant for another one; see [`spin`] for the spinners rayon starts nested.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// While alive, the other workers of the pool it was started in stay busy-waiting for work
/// instead of sleeping (until the guard is dropped, or after [`MAX_IDLE`] without work).
/// Dropping it lets them go back to rayon's idle loop.
#[must_use = "the workers stop spinning when the guard is dropped"]
pub(crate) struct KeepAwake {
    shared: Arc<Shared>,
}

/// What a guard shares with its spinners.
#[derive(Default)]
struct Shared {
    /// Set when the guard is dropped.
    stop: AtomicBool,
    /// Spinners running now.
    running: AtomicUsize,
    /// Spinners started in all.
    started: AtomicUsize,
}

impl KeepAwake {
    /// Starts the spinners on the other workers of the current pool; `None` outside a rayon
    /// pool or in a pool of one thread (nothing to keep awake).
    pub(crate) fn start() -> Option<KeepAwake> {
        let me = rayon::current_thread_index()?;
        if rayon::current_num_threads() < 2 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != me && !SPINNING.get() {
                theirs.started.fetch_add(1, Ordering::AcqRel);
                let _spinning = Spinning::enter(&theirs.running);
                spin(&theirs.stop);
            }
        });
        Some(KeepAwake { shared })
    }
}

thread_local! {
    /// Whether this thread runs a spinner already (further down its stack).
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running a spinner, and counts it in `running`, until dropped (also
/// when a job the spinner ran unwinds through it).
struct Spinning<'a>(&'a AtomicUsize);

impl Spinning<'_> {
    fn enter(running: &AtomicUsize) -> Spinning<'_> {
        SPINNING.set(true);
        running.fetch_add(1, Ordering::AcqRel);
        Spinning(running)
    }
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        SPINNING.set(false);
    }
}

/// Idle time after which a spinner gives up even before its guard is dropped.
const MAX_IDLE: Duration = Duration::from_micros(500);

/// Takes the pool's work until `stop` is set or nothing came for [`MAX_IDLE`].
///
/// A spinner can start nested: a job it took (or any job a worker runs) may wait in a
/// `join` for its other half, and rayon runs queued work while waiting, this thread's
/// broadcast jobs included. A spinner started there would keep that job, and so the step
/// that drops the guard, from finishing. So a spinner never starts on top of another
/// (`SPINNING`), and one started under an ordinary job returns once the step has no other
/// work for it, which is then exactly when the job below it is waited for.
fn spin(stop: &AtomicBool) {
    let mut idle_since: Option<Instant> = None;
    let mut idle_rounds = 0u32;
    while !stop.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
            idle_rounds = 0;
            continue;
        }
        // The clock once every 64 idle rounds (it was 2% of a decoding step's samples).
        idle_rounds = idle_rounds.wrapping_add(1);
        if idle_rounds % 64 == 1 && idle_since.get_or_insert_with(Instant::now).elapsed() > MAX_IDLE
        {
            return;
        }
        std::hint::spin_loop();
    }
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Waits up to 5 s for `f` to hold.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while !f() {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    /// The guard starts one spinner, on the other worker (not on the calling thread), and
    /// the workers take the pool's work (the parallel sum is right and used both threads);
    /// once the guard is dropped the spinner returns and the pool can run a broadcast on
    /// every thread again.
    #[test]
    fn spinners_take_work_and_stop() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let shared = pool.install(|| {
            let guard = KeepAwake::start().expect("a pool of two threads");
            let shared = guard.shared.clone();
            let started = || shared.started.load(Ordering::Acquire);
            assert!(eventually(|| started() == 1), "the other worker spins");
            assert!(!SPINNING.get(), "not on the calling thread");
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            let sum: u64 = (0..10_000u64)
                .collect::<Vec<_>>()
                .into_par_iter()
                .with_max_len(1)
                .map(|i| {
                    threads
                        .lock()
                        .unwrap()
                        .insert(rayon::current_thread_index());
                    std::thread::sleep(Duration::from_micros(10));
                    i
                })
                .sum();
            assert_eq!(sum, 10_000 * 9_999 / 2);
            assert_eq!(threads.lock().unwrap().len(), 2, "both workers took items");
            drop(guard);
            shared
        });
        assert!(
            eventually(|| shared.running.load(Ordering::Acquire) == 0),
            "the spinner returns once the guard is dropped"
        );
        assert_eq!(
            shared.started.load(Ordering::Acquire),
            1,
            "one spinner only"
        );
        let seen = pool.broadcast(|ctx| ctx.index());
        assert_eq!(seen, vec![0, 1]);
        assert!(pool.install(KeepAwake::start).is_some());
        assert!(KeepAwake::start().is_none(), "not inside a pool");
    }

    /// Many short steps in a row, each with nested parallel work (joins that wait, and so
    /// run queued broadcast jobs): the spinner of one step can take a job of the next, whose
    /// join then meets the next step's spinner. Every step must finish (this hung before
    /// spinners learned not to start on top of one another).
    #[test]
    fn back_to_back_steps_with_nested_joins_finish() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let mut total = 0u64;
            for step in 0..3000u64 {
                total += pool.install(|| {
                    let _awake = KeepAwake::start();
                    (0..64u64)
                        .collect::<Vec<_>>()
                        .par_chunks(4)
                        .map(|c| c.par_iter().map(|&i| i + step).sum::<u64>())
                        .sum::<u64>()
                });
            }
            tx.send(total).unwrap();
        });
        let total = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the steps did not finish: a spinner blocked its own step");
        assert_eq!(
            total,
            (0..3000u64).map(|s| 64 * 63 / 2 + 64 * s).sum::<u64>()
        );
    }
}
