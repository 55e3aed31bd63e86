//! What a worker reports: its counters, and what its shutdown did.

/// What a shutdown did with the events in flight.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Handlers that finished during the grace period.
    pub finished: u64,
    /// Events given back to the queue because their handler did not finish in time.
    pub released: u64,
}

/// Counters of a worker since it started.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Handler calls started.
    pub handled: u64,
    /// Attempts that succeeded.
    pub processed: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Events that became dead letters.
    pub dead: u64,
    /// Handler calls that panicked.
    pub panics: u64,
    /// Handler calls that timed out.
    pub timeouts: u64,
    /// Results that could not be recorded because the lease was lost meanwhile.
    pub lost_leases: u64,
}
