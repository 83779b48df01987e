//! Durations, byte sizes and times as people (and Teleport) write them.
//!
//! Durations take Go's and humantime's spelling (`"500ms"`, `"10s"`, `"1h30m"`),
//! because teleport-event-handler.toml files already use it. Sizes take an
//! integer number of bytes or a string with a unit (`"64MiB"`, `"10 MB"`).

use serde::{Deserialize, Deserializer, de};
use std::time::{Duration, SystemTime};

/// A duration read from config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map(ConfigDuration).map_err(de::Error::custom)
    }
}

/// Parses `"250ms"`, `"10s"`, `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("`{text}` is not a duration ({err}); write e.g. \"500ms\", \"10s\" or \"1h30m\""))
}

/// A number of bytes read from config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => parse_byte_size(&text).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

/// Parses `"64MiB"`, `"10 MB"`, `"4096"`; binary and decimal units both work.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size; write e.g. 65536, \"64KiB\" or \"128MiB\""))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("`{text}` has an unknown size unit `{other}`; use B, KiB, MiB or GiB")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses an RFC 3339 time in UTC, as Teleport writes event times and ferry
/// writes its cursors and `start-time` (`2024-05-01T00:00:00Z`, with or
/// without a fraction of a second; a space for the `T` and a missing `Z`
/// are taken too). Surrounding spaces are ignored.
pub fn parse_time(text: &str) -> Result<SystemTime, humantime::TimestampError> {
    let text = text.trim();
    humantime::parse_rfc3339_weak(text).or_else(|_| humantime::parse_rfc3339(text))
}

/// The first second RFC 3339 in humantime cannot write: 10000-01-01T00:00:00Z.
const YEAR_10000: u64 = 253_402_300_800;

/// Whether humantime can write `time` in RFC 3339: from 1970 up to the end
/// of year 9999. It panics on any other (an event time Teleport sends may be
/// anything), so every time from outside is checked with this first.
pub fn writable_time(time: SystemTime) -> bool {
    time.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|since| since.as_secs() < YEAR_10000)
}

/// `time` in RFC 3339 in whole seconds, as the Teleport source stores its
/// times; one humantime cannot write is clamped to 1970 or to the end of
/// year 9999 (see [`writable_time`]), as a cursor can hold it.
pub fn format_time(time: SystemTime) -> String {
    let last = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(YEAR_10000 - 1);
    humantime::format_rfc3339_seconds(time.clamp(SystemTime::UNIX_EPOCH, last)).to_string()
}

/// `time` in RFC 3339 with nanoseconds, or `None` when it is before 1970 or
/// after year 9999 (see [`writable_time`]).
pub fn format_time_nanos(time: SystemTime) -> Option<String> {
    writable_time(time).then(|| humantime::format_rfc3339_nanos(time).to_string())
}

/// `time` for a message, whatever it is: `at` and RFC 3339 to the second,
/// or, for a time humantime cannot write, `before 1970-…` or `after 9999-…`.
pub fn describe_time(time: SystemTime) -> String {
    if writable_time(time) {
        format!("at {}", humantime::format_rfc3339_seconds(time))
    } else if time < SystemTime::UNIX_EPOCH {
        "before 1970-01-01T00:00:00Z".to_owned()
    } else {
        "after 9999-12-31T23:59:59Z".to_owned()
    }
}

/// A size for a person: B, KiB or MiB, as the config's sizes are written.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        let at = |seconds: u64, nanos: u32| SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos);
        assert_eq!(parse_time("2024-05-01T00:00:00Z"), Ok(at(1_714_521_600, 0)));
        assert_eq!(parse_time(" 2024-05-01T00:00:00.250Z\n"), Ok(at(1_714_521_600, 250_000_000)));
        assert_eq!(parse_time("2024-05-01 00:00:00"), Ok(at(1_714_521_600, 0)));
        assert!(parse_time("2024-05-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn times_humantime_cannot_write_are_none_or_described() {
        let at = |seconds: u64, nanos: u32| SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos);
        assert_eq!(format_time_nanos(at(0, 0)).as_deref(), Some("1970-01-01T00:00:00.000000000Z"));
        assert_eq!(format_time_nanos(at(YEAR_10000 - 1, 999_999_999)).as_deref(), Some("9999-12-31T23:59:59.999999999Z"));
        assert_eq!(format_time_nanos(at(YEAR_10000, 0)), None);
        assert_eq!(format_time_nanos(SystemTime::UNIX_EPOCH - Duration::from_nanos(1)), None);
        assert_eq!(describe_time(at(1_700_000_000, 0)), "at 2023-11-14T22:13:20Z");
        assert_eq!(describe_time(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), "before 1970-01-01T00:00:00Z");
        assert_eq!(describe_time(at(YEAR_10000, 0)), "after 9999-12-31T23:59:59Z");
    }

    /// Fuzzing with a fixed budget, inside the normal test run: 512 times
    /// across the whole range a `SystemTime` holds, well under a second.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Any time a `SystemTime` can hold: any second either side of 1970.
        pub(crate) fn any_time() -> impl Strategy<Value = SystemTime> {
            (any::<i64>(), 0..1_000_000_000u32).prop_filter_map("out of range", |(seconds, nanos)| {
                let since = Duration::new(seconds.unsigned_abs(), nanos);
                if seconds < 0 { SystemTime::UNIX_EPOCH.checked_sub(since) } else { SystemTime::UNIX_EPOCH.checked_add(since) }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_time_is_formatted_or_described_without_panicking(time in any_time()) {
                match format_time_nanos(time) {
                    Some(text) => prop_assert_eq!(parse_time(&text), Ok(time)),
                    None => prop_assert!(!writable_time(time)),
                }
                let described = describe_time(time);
                prop_assert!(described.starts_with("at ") || described.starts_with("before ") || described.starts_with("after "));
                let stored = format_time(time);
                prop_assert!(parse_time(&stored).is_ok(), "a stored time reads back: {}", stored);
            }
        }
    }

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_byte_size("1gib"), Ok(1 << 30));
        assert!(parse_byte_size("12 parsecs").expect_err("refused").contains("unknown size unit `parsecs`"));
        assert!(parse_byte_size("MiB").expect_err("refused").contains("is not a size"));
        assert!(parse_byte_size("99999999999999GiB").expect_err("refused").contains("too large"));
    }

    #[test]
    fn durations_in_go_spelling() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").expect_err("refused").contains("`soon` is not a duration"));
    }
}
