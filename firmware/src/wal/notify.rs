//! Waking the appenders whose records became durable — and only those.
//!
//! An appender that must wait registers the offset it waits for and parks. After each sync
//! the writer publishes the durable offset. With at most [`DIRECT_WAKES_MAX`] waiters it
//! unparks the ready ones itself (a lone appender pays one hand-off back, as before); with
//! more it unparks one thread, the notifier, and goes straight on with the next round, while
//! the notifier takes the waiters at or below the durable offset and unparks each of them.
//! So the writer pays at most a few wakes per round however many appenders wait, a waiter
//! whose records are not durable yet is not woken at all (no thundering herd on one
//! condition variable), and the next round's write and sync overlap the wake-ups.
//!
//! No wake-up is lost: a waiter registers, then reads the durable offset; the notifier reads
//! the durable offset after the writer published it, then takes the registered waiters. One
//! of the two sees the other. Spurious wake-ups are harmless: a waiter parks in a loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

use gridlog_common::Offset;

/// The most waiters the writer wakes itself after a sync; beyond, the notifier does.
pub(crate) const DIRECT_WAKES_MAX: usize = 4;

/// The appenders waiting for durability, and the notifier that wakes them.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    waiting: Mutex<Vec<(Offset, Thread)>>,
    notifier: OnceLock<Thread>,
    /// Set when the log failed or closes: every waiter is woken to find out.
    wake_all: AtomicBool,
}

impl Waiters {
    /// Registers the current thread as waiting until `offset` is durable.
    pub(crate) fn register(&self, offset: Offset) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.push((offset, std::thread::current()));
    }

    /// Sets the thread that [`Waiters::durable_changed`] wakes.
    pub(crate) fn set_notifier(&self, notifier: Thread) {
        let _ = self.notifier.set(notifier);
    }

    /// The writer published the durable offset `durable`: wake the few ready waiters
    /// directly, or hand the many to the notifier.
    pub(crate) fn durable_changed(&self, durable: Offset) {
        let ready = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if waiting.len() > DIRECT_WAKES_MAX {
                None
            } else {
                Some(take_ready(&mut waiting, durable, false))
            }
        };
        match ready {
            Some(ready) => ready.iter().for_each(Thread::unpark),
            None => self.wake_notifier(),
        }
    }

    fn wake_notifier(&self) {
        if let Some(notifier) = self.notifier.get() {
            notifier.unpark();
        }
    }

    /// From now on every waiter is woken (the log failed or closes).
    pub(crate) fn wake_everyone(&self) {
        self.wake_all.store(true, Ordering::Release);
        self.wake_notifier();
    }

    /// Takes the waiters whose records are durable at `durable` (all of them once
    /// [`Waiters::wake_everyone`] was called) and unparks them.
    pub(crate) fn wake_durable(&self, durable: Offset) {
        let all = self.wake_all.load(Ordering::Acquire);
        let ready = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            take_ready(&mut waiting, durable, all)
        };
        for thread in ready {
            thread.unpark();
        }
    }
}

/// Removes and returns the waiters that are ready: those waiting for an offset at or below
/// `durable`, or every one if `all`.
pub(crate) fn take_ready<T>(waiting: &mut Vec<(Offset, T)>, durable: Offset, all: bool) -> Vec<T> {
    let mut ready = Vec::new();
    let mut i = 0;
    while i < waiting.len() {
        if all || waiting[i].0 <= durable {
            ready.push(waiting.swap_remove(i).1);
        } else {
            i += 1;
        }
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_durable_waiters_are_taken() {
        let mut waiting = vec![(5u64, 'a'), (9, 'b'), (3, 'c'), (12, 'd')];
        let mut ready = take_ready(&mut waiting, 9, false);
        ready.sort();
        assert_eq!(ready, ['a', 'b', 'c']);
        assert_eq!(waiting, [(12, 'd')]);
        assert!(take_ready(&mut waiting, 11, false).is_empty());
        assert_eq!(take_ready(&mut waiting, 0, true), ['d']);
        assert!(waiting.is_empty());
    }
}
