//! The bounds of every number an operator writes, in one place.
//!
//! A configuration number becomes a `Duration`, a count, a pool size or a
//! window, and an absurd one must be refused at load with its field path,
//! never reach `Duration::from_secs_f64` (which panics past ~5.8e11 years),
//! an `Instant + Duration` (which panics when it overflows), a lossy cast
//! or an allocation sized by it. Every compiler converts its numbers
//! through [`seconds`], [`millis`], [`whole_seconds`] or [`int`], with
//! APISIX's schema bounds where it has them and the sane maxima below
//! where it has none (`README.md`, "Limits", lists them).

use std::time::Duration;

use super::error::{ConfigError, FieldPath};

/// Hard ceiling for `limits.max_headers`; the parser keeps its scratch table
/// on the stack.
pub const MAX_HEADERS_CEILING: usize = 512;

/// The longest time any timeout, interval, idle time or TTL may be: a day.
pub const MAX_SECONDS: u64 = 86_400;
/// [`MAX_SECONDS`] in milliseconds, for the fields APISIX counts in ms.
pub const MAX_MILLIS: i64 = 86_400_000;
/// The longest rate-limit window: 365 days.
pub const MAX_WINDOW_SECONDS: i64 = 365 * 86_400;
/// Most idle connections a keep-alive pool may keep (per key and worker).
pub const MAX_POOL_SIZE: i64 = 100_000;
/// Most retries (upstream `retries`, `max_retries`, `max_retry_count`).
pub const MAX_RETRIES: i64 = 1_000;
/// Most nodes of an upstream, and instances of an `ai-proxy-multi`: the
/// balancer's cycle and ring are built per member at load.
pub const MAX_MEMBERS: usize = 1_024;
/// The largest node or instance weight.
pub const MAX_WEIGHT: i64 = 1_000_000;

/// The lower end of a range of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Min {
    /// `v >= x`.
    Inclusive(f64),
    /// `v > x` (APISIX's `exclusiveMinimum`).
    Exclusive(f64),
}

/// `v` seconds (a JSON number, fractions allowed) within `min` and `max`
/// (inclusive), as a `Duration`.
pub fn seconds(v: f64, min: Min, max: u64, at: &FieldPath) -> Result<Duration, ConfigError> {
    let fits = match min {
        Min::Inclusive(lo) => v >= lo,
        Min::Exclusive(lo) => v > lo,
    } && v <= max as f64;
    // NaN and infinities fail every comparison above or the bound.
    if !fits || !v.is_finite() {
        let low = match min {
            Min::Inclusive(lo) => format!(">= {lo}"),
            Min::Exclusive(lo) => format!("> {lo}"),
        };
        return Err(at.error(format!("must be a number of seconds {low} and <= {max}")));
    }
    Ok(Duration::from_secs_f64(v))
}

/// `v` as a `T` if `min <= v <= max` (the bounds must fit `T`).
pub fn int<T: TryFrom<i64>>(v: i64, min: i64, max: i64, at: &FieldPath) -> Result<T, ConfigError> {
    let refused = || at.error(format!("must be >= {min} and <= {max}"));
    if v < min || v > max {
        return Err(refused());
    }
    T::try_from(v).map_err(|_| refused())
}

/// `v` milliseconds within `min..=max`.
pub fn millis(v: i64, min: i64, max: i64, at: &FieldPath) -> Result<Duration, ConfigError> {
    let ms: u64 = int(v, min, max, at)
        .map_err(|_| at.error(format!("must be >= {min} and <= {max} (milliseconds)")))?;
    Ok(Duration::from_millis(ms))
}

/// `v` whole seconds within `min..=max`.
pub fn whole_seconds(v: i64, min: i64, max: i64, at: &FieldPath) -> Result<Duration, ConfigError> {
    let s: u64 = int(v, min, max, at)
        .map_err(|_| at.error(format!("must be >= {min} and <= {max} (seconds)")))?;
    Ok(Duration::from_secs(s))
}

/// A list of members (nodes, instances) no longer than [`MAX_MEMBERS`].
pub fn members<T>(list: &[T], at: &FieldPath) -> Result<(), ConfigError> {
    if list.len() > MAX_MEMBERS {
        return Err(at.error(format!(
            "lists {} entries; at most {MAX_MEMBERS} are allowed",
            list.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> FieldPath {
        FieldPath::root().field("x")
    }

    #[test]
    fn seconds_refuse_what_a_duration_cannot_hold() {
        for bad in [1e20, f64::NAN, f64::INFINITY, -1.0, 86_400.5, f64::MAX] {
            let e = seconds(bad, Min::Inclusive(0.0), MAX_SECONDS, &at()).unwrap_err();
            assert_eq!(e.path, "x", "{bad}");
            assert!(e.reason.contains("seconds >= 0 and <= 86400"), "{e}");
        }
        assert_eq!(
            seconds(0.0, Min::Inclusive(0.0), MAX_SECONDS, &at()).unwrap(),
            Duration::ZERO
        );
        assert!(seconds(0.0, Min::Exclusive(0.0), MAX_SECONDS, &at())
            .unwrap_err()
            .reason
            .contains("seconds > 0 and <= 86400"));
        assert_eq!(
            seconds(1.5, Min::Exclusive(0.0), MAX_SECONDS, &at()).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            seconds(86_400.0, Min::Exclusive(0.0), MAX_SECONDS, &at()).unwrap(),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn integers_in_range_convert_without_loss() {
        assert_eq!(int::<u32>(7, 1, 10, &at()).unwrap(), 7);
        assert_eq!(int::<usize>(10, 1, 10, &at()).unwrap(), 10);
        for bad in [0, 11, i64::MAX, i64::MIN] {
            let e = int::<u16>(bad, 1, 10, &at()).unwrap_err();
            assert_eq!(e.to_string(), "x: must be >= 1 and <= 10");
        }
        // A bound the type cannot hold is refused, not wrapped.
        assert!(int::<u8>(300, 0, 1000, &at()).is_err());
        assert_eq!(
            millis(1500, 1, MAX_MILLIS, &at()).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(millis(i64::MAX, 1, MAX_MILLIS, &at())
            .unwrap_err()
            .reason
            .contains("(milliseconds)"));
        assert!(whole_seconds(-1, 0, 60, &at())
            .unwrap_err()
            .reason
            .contains("(seconds)"));
    }

    #[test]
    fn member_lists_are_capped() {
        assert!(members(&[0u8; MAX_MEMBERS], &at()).is_ok());
        let e = members(&[0u8; MAX_MEMBERS + 1], &at()).unwrap_err();
        assert!(e.reason.contains("at most 1024"), "{e}");
    }
}
