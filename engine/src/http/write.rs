//! Head serialisation helpers: status lines, header lines and decimal
//! numbers written straight into a reusable output buffer.

/// Appends `n` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa_buf();
    out.extend_from_slice(format_u64(&mut buf, n));
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `name: value\r\n`.
#[inline]
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `{prefix}{suffix}: ` where `suffix` comes from configuration
/// (an instance name): bytes not allowed in a header name become `-`.
pub fn push_header_name_suffix(out: &mut Vec<u8>, prefix: &[u8], suffix: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend(suffix.iter().map(|&b| {
        if b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b) {
            b
        } else {
            b'-'
        }
    }));
    out.extend_from_slice(b": ");
}

/// Appends `HTTP/1.1 {status} {reason}\r\n` with the canonical reason phrase.
pub fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Canonical reason phrase for `status`.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_lines() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        push_u64(&mut v, 18446744073709551615);
        assert_eq!(v, b"018446744073709551615");
        v.clear();
        push_status_line(&mut v, 404);
        assert_eq!(v, b"HTTP/1.1 404 Not Found\r\n");
    }
}
