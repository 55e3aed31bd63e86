//! The inbox as the gate's sink.

use hookgate::{
    BoxFuture, Gate, GateBuilder, Handoff, Handshake, Sink, SinkError, VerifiedEvent, Verifier,
};

use crate::dedup::OwnSinkDedup;
use crate::inbox::Enqueued;

use crate::{Inbox, InboxError};

/// `Ok` only once the event (or an earlier copy with the same dedup key) is committed to
/// disk, so the gate's 2xx always follows a durable copy. [`InboxError::Full`] becomes
/// [`SinkError::full`]; every other error becomes [`SinkError::unavailable`]. Either way
/// nothing was stored and the gate answers 503.
///
/// [`hand_off`](Sink::hand_off) reports an earlier copy found in the dedup table as
/// [`Handoff::AlreadyStored`], so the gate answers `duplicate`.
impl Sink for Inbox {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        let handed = self.hand_off(event);
        Box::pin(async move { handed.await.map(drop) })
    }

    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        Box::pin(async move {
            match Inbox::enqueue(self, &event).await {
                Ok(Enqueued::Stored(_)) => Ok(Handoff::Enqueued),
                Ok(Enqueued::Duplicate(_)) => Ok(Handoff::AlreadyStored),
                Err(InboxError::Full) => Err(SinkError::full()),
                Err(err) => Err(SinkError::unavailable(err)),
            }
        })
    }

    /// Writes the handshake to the `handshakes` table ([`Inbox::handshakes`]), never to the
    /// events.
    fn record_handshake(&self, handshake: Handshake) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            Inbox::record_handshake(self, &handshake)
                .await
                .map_err(SinkError::unavailable)
        })
    }
}

impl Inbox {
    /// A [`Gate`] builder with this inbox as both the dedup store and the sink: the usual
    /// set-up, in which a 2xx means the event and its dedup entry were committed together.
    /// Claims then stay in memory, and the enqueue transaction is the one place that checks
    /// the database for an earlier copy.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use hookgate::{SchemeId, Verifier};
    ///
    /// let inbox = hookgate_inbox::Inbox::open(dir.path().join("inbox.db"))?;
    /// let verifier = Verifier::builder(SchemeId::Stripe).secret("whsec_test").build()?;
    /// let gate = inbox.gate(verifier).build()?;
    /// # let _ = gate;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gate(&self, verifier: Verifier) -> GateBuilder {
        Gate::builder(verifier)
            .dedup(OwnSinkDedup(self.clone()))
            .sink(self.clone())
    }
}
