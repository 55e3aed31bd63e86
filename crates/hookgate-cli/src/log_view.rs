//! The status counts as `hookgate inbox stats` and serve's `/metrics` show them, whichever
//! store they come from (both answer the one [`StatusCounts`] of the event log).

use hookgate_inbox::{Status, StatusCounts};

/// How many events are in each status, then how many wait and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) each: Vec<(&'static str, u64)>,
    pub(crate) pending: u64,
    pub(crate) total: u64,
}

impl From<&StatusCounts> for Counts {
    fn from(counts: &StatusCounts) -> Self {
        Counts {
            each: Status::ALL
                .iter()
                .map(|&status| (status.as_str(), counts.get(status)))
                .collect(),
            pending: counts.pending(),
            total: counts.total(),
        }
    }
}
