//! An upstream's `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an
//! HTTP-date, read into how long a 429'd instance cools down. The header
//! comes from the upstream, so the answer is held to a day either way.

use std::time::Duration;

/// The longest cooldown a `Retry-After` may ask for: a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After`: delay-seconds or an HTTP-date, at most a day either way
/// (the header comes from the upstream). Fuzzed.
pub fn parse_retry_after(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Past u64: as long as allowed.
        let secs = s.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    let d = when.duration_since(std::time::SystemTime::now()).ok()?;
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(b" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(b"soon"), None);
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(future.as_bytes()).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        // A date millennia ahead is held to a day, as delay-seconds are
        // (an upstream's header must not bench an instance for ever).
        assert_eq!(
            parse_retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999"),
            Some(Duration::from_secs(86_400))
        );
    }
}
