//! Durations as people type them in a config file: `250ms`, `30s`, `10m`, `1h`, `3d`.

use std::time::Duration;

/// Parses a duration the way hookgate's configuration writes them: `250ms`, `30s`, `10m`,
/// `2h`, `3d`, or a bare number of seconds (`1.5` allowed). The units are those of the
/// `hookgate` command line (`ms`, `s`/`sec`/`secs`, `m`/`min`/`mins`, `h`, `d`), so one
/// function can serve both.
///
/// ```
/// use std::time::Duration;
/// use hookgate_queue::parse_duration;
///
/// assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("soon").is_err());
/// ```
///
/// # Errors
/// A sentence saying which form was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("expected a duration such as 500ms, 30s, 10m, 1h or 3d, not {text:?}")
    })?;
    let unit_secs = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_units_of_the_command_line() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(259_200)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "-1s", "5 weeks", "s", "1e400s", "1.2.3s"] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
    }
}
