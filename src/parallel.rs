//! A small fixed pool of scoped threads over a slice. Fleet-wide commands read, parse and
//! write thousands of files; a pool per call keeps that work on every core (or, for I/O that
//! mostly waits, on more threads than cores) without a runtime or a dependency.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Frees `value` on another thread. The parse of a 10,000-host `.sops.yaml` is some
/// 200,000 small allocations; freeing them costs as much as a tenth of a `vm-fresh`, which
/// the other core can do while this one goes on. A value left when the process exits is
/// simply not freed.
pub(crate) fn drop_aside<T: Send + 'static>(value: T) {
    // Detached; without a thread to be had, the closure (and the value) is dropped here.
    drop(std::thread::Builder::new().name("drop".into()).spawn(move || drop(value)));
}

/// `f(&input)`, computed on another thread while this one goes on. [`Later::get`] waits for it,
/// or computes it there and then when no thread could be had (or the thread died).
pub(crate) struct Later<I, T> {
    input: std::sync::Arc<I>,
    f: fn(&I) -> T,
    handle: Option<std::thread::JoinHandle<T>>,
}

impl<I: Send + Sync + 'static, T: Send + 'static> Later<I, T> {
    pub(crate) fn spawn(input: I, f: fn(&I) -> T) -> Self {
        let input = std::sync::Arc::new(input);
        let theirs = std::sync::Arc::clone(&input);
        let handle = std::thread::Builder::new().name("later".into()).spawn(move || f(&theirs)).ok();
        Self { input, f, handle }
    }

    pub(crate) fn get(self) -> T {
        self.handle.and_then(|h| h.join().ok()).unwrap_or_else(|| (self.f)(&self.input))
    }
}

/// Runs `f` over `items` on at most `jobs` threads; results in the order of `items`. With
/// one job or one item nothing is spawned.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = jobs.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results.into_iter().filter_map(|m| m.into_inner().ok().flatten()).collect()
}

/// [`map`] over owned items, each handed to `f` by value: for work that consumes what it is
/// given (a document encrypted in place, a request planned into a host).
pub(crate) fn map_into<T: Send, R: Send>(items: Vec<T>, jobs: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    // Each slot is taken exactly once, by the one worker that drew its index.
    let take = |slot: &Mutex<Option<T>>| slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    map(&slots, jobs, |slot| take(slot).map(&f)).into_iter().flatten().collect()
}

/// The cores this process may use: the default for work that computes.
#[must_use]
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order_and_bounds_workers() {
        let items: Vec<usize> = (0..50).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = map(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(map(&[] as &[usize], 4, |i| *i).is_empty());
    }

    #[test]
    fn map_into_hands_each_item_over_once_and_keeps_order() {
        let items: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let seen = Mutex::new(Vec::new());
        let out = map_into(items.clone(), 4, |s| {
            seen.lock().expect("not poisoned").push(s.clone());
            s + "!"
        });
        assert_eq!(out, items.iter().map(|s| format!("{s}!")).collect::<Vec<_>>());
        let mut seen = seen.into_inner().expect("not poisoned");
        seen.sort();
        let mut want = items;
        want.sort();
        assert_eq!(seen, want, "every item given to f exactly once");
    }

    #[test]
    fn later_runs_beside_the_caller_and_gives_its_answer() {
        let caller = std::thread::current().id();
        let later = Later::spawn(21, |n| (n * 2, std::thread::current().id()));
        let (answer, ran_on) = later.get();
        assert_eq!(answer, 42);
        assert_ne!(ran_on, caller, "computed on its own thread");
        // A thread that died is made up for on the caller's.
        let died = Later { input: std::sync::Arc::new(5), f: |n| n + 1, handle: Some(std::thread::spawn(|| -> i32 { panic!("died") })) };
        assert_eq!(died.get(), 6);
    }
}
