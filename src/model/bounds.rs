//! Numbers and durations as operators write them, each checked against its range: no
//! value fleetmig takes from a flag or the fleet file is used unchecked.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A duration such as `500ms`, `10s` or `1h 30m`, from `min` to `max`. Durations count in
/// whole milliseconds (what PostgreSQL's timeouts take): `500us` or `1500us` is refused,
/// never rounded to a silent `0` (which PostgreSQL reads as "no timeout").
pub fn duration(text: &str, min: Duration, max: Duration) -> Result<Duration, BadDuration> {
    let value = humantime::parse_duration(text.trim()).map_err(|cause| BadDuration::NotADuration {
        text: text.to_owned(),
        cause,
    })?;
    if value.subsec_nanos() % 1_000_000 != 0 {
        return Err(BadDuration::NotWholeMillis { text: text.to_owned() });
    }
    if value < min || value > max {
        return Err(BadDuration::OutOfRange {
            text: text.to_owned(),
            min,
            max,
        });
    }
    Ok(value)
}

/// A duration refused, named as it was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadDuration {
    #[error("`{text}` is not a duration such as 500ms, 10s or 5m ({cause})")]
    NotADuration {
        text: String,
        cause: humantime::DurationError,
    },
    #[error("`{text}` is not a whole number of milliseconds: durations count in milliseconds")]
    NotWholeMillis { text: String },
    #[error(
        "`{text}` is out of range: give a duration from {} to {}",
        humantime::format_duration(*.min),
        humantime::format_duration(*.max)
    )]
    OutOfRange { text: String, min: Duration, max: Duration },
}

/// A whole number from `min` to `max`.
pub fn number<T>(text: &str, min: T, max: T) -> Result<T, BadNumber>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    match text.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(BadNumber {
            text: text.to_owned(),
            min: min.to_string(),
            max: max.to_string(),
        }),
    }
}

/// A number refused: not a whole number, or out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a whole number from {min} to {max}")]
pub struct BadNumber {
    pub text: String,
    /// The range's ends, as the number's type prints them.
    pub min: String,
    pub max: String,
}

pub const MS: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// The longest pause after a wave, from `--bake` or the fleet file's `rollout.bake`.
pub const BAKE_MAX: Duration = Duration::from_secs(7 * 86_400);

/// The most sessions a fleet-file host may allow (`max_connections`).
pub const MAX_CONNECTIONS: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_milliseconds_within_their_range() {
        assert_eq!(duration("1.5s", Duration::ZERO, HOUR), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("0s", Duration::ZERO, HOUR), Ok(Duration::ZERO));
        let err = duration("500us", Duration::ZERO, HOUR).unwrap_err().to_string();
        assert!(err.contains("not a whole number of milliseconds"), "{err}");
        let err = duration("99999999999999h", Duration::ZERO, DAY)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 0s to 1day"), "{err}");
        let err = duration("0s", MS, HOUR).unwrap_err().to_string();
        assert!(err.contains("from 1ms to 1h"), "{err}");
        let err = duration("ten", MS, HOUR).unwrap_err().to_string();
        assert!(err.contains("`ten` is not a duration"), "{err}");
        assert!(duration("9999999999999999999999h", MS, HOUR).is_err());
    }

    #[test]
    fn numbers_within_their_range() {
        assert_eq!(number("8", 1usize, 1000), Ok(8));
        assert_eq!(
            number("4294967295", 1u32, 1000).unwrap_err().to_string(),
            "`4294967295` is not a whole number from 1 to 1000"
        );
        assert!(number("-1", 0u32, 10).is_err());
        assert!(number("0", 1u32, 10).is_err());
    }
}
