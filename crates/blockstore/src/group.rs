//! [`GroupCommit`]: classic leader/follower group commit.
//!
//! Many threads each have an item to make durable. The first to arrive while nobody is
//! committing becomes the *leader*: it takes every queued item (its own included), runs
//! the batch's commit once, hands each waiter the outcome and wakes them. Items that
//! arrive meanwhile queue up and are taken by the next leader, so an idle system adds no
//! latency (a batch of one) and under load batches grow by themselves:
//!
//! ```text
//!   A ─submit─▶ [A]        A leads: commit([A]) ─────────────▶ A returns
//!   B ─submit─▶ [B]   waits while A commits ─┐
//!   C ─submit─▶ [B,C] waits ─────────────────┴▶ B leads: commit([B,C]) ─▶ B, C return
//! ```
//!
//! Nobody returns before the commit that covers its item has returned: a caller that
//! acknowledges after `submit` acknowledges only durable work.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct State<T, E> {
    queue: Vec<(u64, T)>,
    leading: bool,
    next_ticket: u64,
    outcomes: HashMap<u64, Result<(), E>>,
}

/// A group-commit point for items of type `T` whose commit fails with `E`.
#[derive(Debug)]
pub struct GroupCommit<T, E> {
    state: Mutex<State<T, E>>,
    wake: Condvar,
}

impl<T, E> Default for GroupCommit<T, E> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
                next_ticket: 0,
                outcomes: HashMap::new(),
            }),
            wake: Condvar::new(),
        }
    }
}

/// Ends a leader's turn even if its commit panicked: waiters get `failed` instead of
/// waiting forever.
struct Turn<'a, T, E> {
    group: &'a GroupCommit<T, E>,
    tickets: Vec<u64>,
    outcome: Option<Result<(), E>>,
    replicate: &'a dyn Fn(&E) -> E,
    failed: &'a dyn Fn() -> E,
}

impl<T, E> Drop for Turn<'_, T, E> {
    fn drop(&mut self) {
        let outcome = self.outcome.take();
        let mut state = self.group.lock();
        for ticket in self.tickets.drain(..) {
            let each = match &outcome {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err((self.replicate)(e)),
                None => Err((self.failed)()),
            };
            state.outcomes.insert(ticket, each);
        }
        state.leading = false;
        drop(state);
        self.group.wake.notify_all();
    }
}

impl<T, E> GroupCommit<T, E> {
    /// A group-commit point with nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` and returns once a commit that covered it has returned, with that
    /// commit's outcome. `commit` runs (in whichever caller leads) on a batch of items;
    /// `replicate` gives each waiter of a failed batch its own copy of the error, and
    /// `failed` makes the error for the waiters of a commit that panicked.
    pub fn submit(
        &self,
        item: T,
        commit: impl Fn(Vec<T>) -> Result<(), E>,
        replicate: impl Fn(&E) -> E,
        failed: impl Fn() -> E,
    ) -> Result<(), E> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, item));
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.leading {
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.leading = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let (tickets, items): (Vec<u64>, Vec<T>) = batch.into_iter().unzip();
            let mut turn = Turn {
                group: self,
                tickets,
                outcome: None,
                replicate: &replicate,
                failed: &failed,
            };
            turn.outcome = Some(commit(items));
            drop(turn);
            state = self.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn one_caller_commits_alone_and_errors_reach_every_waiter() {
        let group: GroupCommit<u32, String> = GroupCommit::new();
        let ok = group.submit(
            1,
            |items| {
                assert_eq!(items, [1]);
                Ok(())
            },
            Clone::clone,
            || "panicked".into(),
        );
        assert_eq!(ok, Ok(()));
        let err = group.submit(
            2,
            |_| Err("disk full".to_string()),
            Clone::clone,
            || "panicked".into(),
        );
        assert_eq!(err, Err("disk full".to_string()));
    }

    #[test]
    fn concurrent_items_share_commits_and_each_is_committed_before_its_caller_returns() {
        let group: Arc<GroupCommit<usize, String>> = Arc::new(GroupCommit::new());
        let committed = Arc::new(Mutex::new(Vec::new()));
        let commits = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (group, committed, commits) =
                    (group.clone(), committed.clone(), commits.clone());
                std::thread::spawn(move || {
                    let c2 = committed.clone();
                    group
                        .submit(
                            i,
                            move |items| {
                                commits.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(5));
                                c2.lock().unwrap().extend(items);
                                Ok(())
                            },
                            Clone::clone,
                            || "panicked".into(),
                        )
                        .unwrap();
                    assert!(
                        committed.lock().unwrap().contains(&i),
                        "{i} returned before its commit"
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = committed.lock().unwrap().clone();
        all.sort_unstable();
        assert_eq!(all, (0..32).collect::<Vec<_>>());
        assert!(commits.load(Ordering::SeqCst) < 32, "no batching happened");
    }

    #[test]
    fn a_panicking_commit_fails_its_batch_and_the_group_carries_on() {
        let group: Arc<GroupCommit<u32, String>> = Arc::new(GroupCommit::new());
        let g = group.clone();
        let r = std::thread::spawn(move || {
            g.submit(1, |_| panic!("boom"), Clone::clone, || "panicked".into())
        })
        .join();
        assert!(r.is_err(), "the leader's panic propagates to the leader");
        assert_eq!(
            group.submit(2, |_| Ok(()), Clone::clone, || "panicked".into()),
            Ok(())
        );
    }
}
