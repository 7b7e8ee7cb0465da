//! Cancellation of a whole run: `lab run`'s Ctrl-C handler sets one flag, and every wait and
//! loop (the runner's polls, a backend's threads) gives up at its next check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a wait sleeps at most between two looks at the flag.
const TICK: Duration = Duration::from_millis(20);

/// Set once by a signal handler (`lab run` on Ctrl-C): every wait and loop gives up.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Asks every running scenario to stop at its next check (async-signal-safe).
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// True once [`cancel`] was called.
pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Waits up to `d`, in small slices, unless the run is cancelled. Returns false if cancelled.
pub fn pause(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if cancelled() {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(TICK));
    }
}
