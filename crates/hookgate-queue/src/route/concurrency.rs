//! The per-destination concurrency cap.

use std::num::NonZeroU32;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `limit` deliveries to one destination in flight: a worker takes a
/// [`ConcurrencyPermit`] before it starts a delivery and holds it until the attempt ends
/// (dropping it gives the slot back, also on a panic or a cancelled future). Clones share
/// the same slots.
///
/// ```
/// use std::num::NonZeroU32;
/// use hookgate_queue::ConcurrencyGate;
///
/// let gate = ConcurrencyGate::new(NonZeroU32::new(2).unwrap());
/// let a = gate.try_permit().unwrap();
/// let b = gate.try_permit().unwrap();
/// assert!(gate.try_permit().is_none());
/// assert_eq!(gate.in_flight(), 2);
/// drop(a);
/// assert!(gate.try_permit().is_some());
/// # drop(b);
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyGate {
    limit: NonZeroU32,
    slots: Arc<Semaphore>,
}

/// One delivery's slot; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed when the permit is dropped"]
pub struct ConcurrencyPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConcurrencyGate {
    /// A gate with `limit` slots.
    pub fn new(limit: NonZeroU32) -> Self {
        let slots = usize::try_from(limit.get())
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        ConcurrencyGate {
            limit,
            slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// A slot if one is free now.
    pub fn try_permit(&self) -> Option<ConcurrencyPermit> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| ConcurrencyPermit { _permit: permit })
    }

    /// Waits for a free slot (first come, first served).
    pub async fn permit(&self) -> ConcurrencyPermit {
        match Arc::clone(&self.slots).acquire_owned().await {
            Ok(permit) => ConcurrencyPermit { _permit: permit },
            // Acquiring fails only on a closed semaphore, and this one is never closed; if it
            // were, no slot would ever be free again, which is waiting forever.
            Err(_) => std::future::pending().await,
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// Slots taken now.
    pub fn in_flight(&self) -> u32 {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        self.limit.get().saturating_sub(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_gets_the_slot_that_is_freed() {
        let gate = ConcurrencyGate::new(NonZeroU32::new(1).unwrap());
        let first = gate.permit().await;
        let other = gate.clone();
        let waiter = tokio::spawn(async move {
            let _second = other.permit().await;
            other.in_flight()
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(gate.in_flight(), 1);
        drop(first);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(gate.in_flight(), 0);
        assert_eq!(gate.limit(), 1);
    }

    #[tokio::test]
    async fn never_more_than_the_limit_in_flight() {
        use std::sync::atomic::{AtomicU32, Ordering};

        let gate = ConcurrencyGate::new(NonZeroU32::new(3).unwrap());
        // Counted by the tasks themselves, not by the gate under test.
        let running = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (gate, running, peak) = (gate.clone(), Arc::clone(&running), Arc::clone(&peak));
            tasks.push(tokio::spawn(async move {
                let _permit = gate.permit().await;
                let now = running.fetch_add(1, Ordering::SeqCst).saturating_add(1);
                peak.fetch_max(now, Ordering::SeqCst);
                // Let every other task try its luck while this one holds its slot.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // The slots were all used at once, and never more.
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(gate.in_flight(), 0);
    }
}
