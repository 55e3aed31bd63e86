//! Rejected requests, deferrals and handshakes per reason: the event log stores only what
//! was accepted, so these come from the counters the gate already records
//! (`hookgate_rejected_total`, `hookgate_failures_total`, `hookgate_handshakes_total`), read
//! back from the receiver's Prometheus recorder.

use metrics_exporter_prometheus::PrometheusHandle;

/// Requests the gate refused with a 4xx. Labels: `scheme`, `reason`.
const REJECTED: &str = "hookgate_rejected_total";
/// Requests deferred with a 503. Labels: `scheme`, `reason`.
const FAILURES: &str = "hookgate_failures_total";
/// Provider URL handshakes answered, where the gate counts them. Labels: `scheme` and a
/// `reason` or `kind`, whichever it records.
const HANDSHAKES: &str = "hookgate_handshakes_total";

/// A sample's labels, in order.
type Labels = Vec<(String, String)>;

/// One counter: a reason, a scheme and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) reason: String,
    pub(super) scheme: String,
    pub(super) count: u64,
}

/// The receiver's counts since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// False for a console without a receiver (`hookgate console`).
    pub(super) available: bool,
    pub(super) received: u64,
    pub(super) enqueued: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: Vec<Row>,
    pub(super) failures: Vec<Row>,
    pub(super) handshakes: Vec<Row>,
}

impl Counts {
    /// The counts in the recorder, if there is one.
    pub(super) fn read(handle: Option<&PrometheusHandle>) -> Counts {
        match handle {
            Some(handle) => Counts::parse(&handle.render()),
            None => Counts::default(),
        }
    }

    /// The counts in a Prometheus text exposition.
    pub(super) fn parse(text: &str) -> Counts {
        let mut counts = Counts {
            available: true,
            ..Counts::default()
        };
        for line in text.lines() {
            let Some((name, labels, value)) = sample(line) else {
                continue;
            };
            let label = |wanted: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == wanted)
                    .map(|(_, v)| v.clone())
            };
            let row = || Row {
                reason: label("reason")
                    .or_else(|| label("kind"))
                    .unwrap_or_else(|| "—".to_owned()),
                scheme: label("scheme").unwrap_or_else(|| "—".to_owned()),
                count: value,
            };
            match name {
                REJECTED => counts.rejected.push(row()),
                FAILURES => counts.failures.push(row()),
                HANDSHAKES => counts.handshakes.push(row()),
                "hookgate_received_total" => {
                    counts.received = counts.received.saturating_add(value);
                }
                "hookgate_enqueued_total" => {
                    counts.enqueued = counts.enqueued.saturating_add(value);
                }
                "hookgate_duplicates_total" => {
                    counts.duplicates = counts.duplicates.saturating_add(value);
                }
                _ => {}
            }
        }
        for rows in [
            &mut counts.rejected,
            &mut counts.failures,
            &mut counts.handshakes,
        ] {
            rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        }
        counts
    }

    /// The JSON of `GET /_hookgate/api/rejections`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let rows = |rows: &[Row]| -> Vec<serde_json::Value> {
            rows.iter()
                .map(|r| serde_json::json!({"reason": r.reason, "scheme": r.scheme, "count": r.count}))
                .collect()
        };
        serde_json::json!({
            "available": self.available,
            "received": self.received,
            "accepted": self.enqueued,
            "duplicates": self.duplicates,
            "rejected": rows(&self.rejected),
            "deferred": rows(&self.failures),
            "handshakes": rows(&self.handshakes),
        })
    }
}

/// One sample line: `name{a="x",b="y"} 12`. Comments, histograms and unparsable lines
/// give `None`.
fn sample(line: &str) -> Option<(&str, Labels, u64)> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.trim().parse::<f64>().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative finite counter"
    )]
    let value = value as u64;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head.trim(), Vec::new(), value));
    };
    let rest = rest.trim_end().strip_suffix('}')?;
    Some((name, labels(rest)?, value))
}

/// `a="x",b="y\"z"` → pairs, with the exposition's escapes (`\\`, `\"`, `\n`) undone.
fn labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        out.push((name.trim().to_owned(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gates_counters_per_reason() {
        let text = r#"# TYPE hookgate_rejected_total counter
hookgate_rejected_total{scheme="stripe",reason="signature_mismatch"} 7
hookgate_rejected_total{scheme="stripe",reason="timestamp_too_old"} 2
hookgate_failures_total{scheme="stripe",reason="sink_full"} 1
hookgate_handshakes_total{scheme="slack",kind="url_verification"} 3
hookgate_received_total{scheme="stripe"} 20
hookgate_received_total{scheme="github"} 5
hookgate_enqueued_total{scheme="stripe"} 10
hookgate_duplicates_total{scheme="stripe"} 1
hookgate_verify_duration_seconds_bucket{scheme="stripe",le="0.005"} 20
weird{a="unterminated} 1
"#;
        let counts = Counts::parse(text);
        assert!(counts.available);
        assert_eq!(counts.received, 25);
        assert_eq!(counts.enqueued, 10);
        assert_eq!(counts.duplicates, 1);
        assert_eq!(
            counts.rejected,
            vec![
                Row {
                    reason: "signature_mismatch".into(),
                    scheme: "stripe".into(),
                    count: 7
                },
                Row {
                    reason: "timestamp_too_old".into(),
                    scheme: "stripe".into(),
                    count: 2
                },
            ]
        );
        assert_eq!(counts.failures.len(), 1);
        assert_eq!(counts.handshakes[0].reason, "url_verification");
        assert!(!Counts::read(None).available);
    }

    #[test]
    fn label_escapes_are_undone() {
        assert_eq!(
            labels(r#"a="x\"y",b="1\\2\n""#).unwrap(),
            vec![
                ("a".to_owned(), "x\"y".to_owned()),
                ("b".to_owned(), "1\\2\n".to_owned())
            ]
        );
    }
}
