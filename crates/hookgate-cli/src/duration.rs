//! Durations and instants as people type them: `250ms`, `5s`, `10m`, `2h`, `3d`, and for
//! instants also RFC 3339 or Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `250ms`, `5s`, `10m`, `2h`, `3d` or a bare number of seconds (`1.5` allowed): the
/// one reading shared with the destination settings of `hookgate-queue`.
pub(crate) use hookgate_queue::parse_duration;

/// Formats a duration for people: `840µs`, `12ms`, `1.5s`, `2m05s`, `3h10m`.
pub(crate) fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 10 {
        format!("{secs}s")
    } else if duration >= Duration::from_secs(1) {
        format!("{:.1}s", duration.as_secs_f64())
    } else if duration >= Duration::from_millis(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}µs", duration.as_micros())
    }
}

/// Parses an instant: RFC 3339 (`2024-05-01T12:00:00Z`), Unix seconds, or a duration ago
/// (`10m`, `2h`, `3d`: that long before `now`).
///
/// # Errors
/// A description of the accepted forms.
pub(crate) fn parse_instant(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(at) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        let secs = at.unix_timestamp();
        return u64::try_from(secs)
            .ok()
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
            .ok_or_else(|| format!("{text:?} is before 1970"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is out of range"))?;
        return UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| format!("{text:?} is out of range"));
    }
    let ago = parse_duration(text).map_err(|_| {
        format!(
            "expected RFC 3339 (2024-05-01T12:00:00Z), Unix seconds, or a duration ago such \
             as 10m, 2h, 3d; not {text:?}"
        )
    })?;
    Ok(now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

/// An instant as RFC 3339 in UTC, to the millisecond.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map(|d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
        .unwrap_or(0);
    let rounded = nanos.saturating_sub(nanos.rem_euclid(1_000_000));
    time::OffsetDateTime::from_unix_timestamp_nanos(rounded)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn instants_are_rfc3339_unix_or_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_instant("1700000000", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            parse_instant("2023-11-14T22:13:20Z", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            parse_instant("10m", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_699_999_400)
        );
        assert!(parse_instant("yesterday", now).is_err());
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn human_durations_are_short() {
        assert_eq!(human(Duration::from_micros(840)), "840µs");
        assert_eq!(human(Duration::from_millis(12)), "12ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 600)), "3h10m");
    }
}
