//! Oracles for values read off the wire outside the HTTP codec: an
//! upstream's `Retry-After`, a client's percent-encoded key-auth key, a
//! provider's non-streamed answer converted between formats, and the GCP
//! token endpoint's answer.

use std::time::Duration;

use ringway::http::vars::percent_decode;
use ringway::plugins::ai_proxy_multi::retry_after::parse_retry_after;
use ringway::providers::gcp::token_answer;
use ringway::wire::{convert_error, convert_response, Api, Wire};

/// The longest anything read here may bench an instance or keep a token.
const DAY: Duration = Duration::from_secs(86_400);

/// `Retry-After`: delay-seconds (any number of digits) or an HTTP-date,
/// never more than a day.
pub fn retry_after(data: &[u8]) {
    let got = parse_retry_after(data);
    if let Some(d) = got {
        assert!(d <= DAY, "{d:?}");
    }
    let trimmed = std::str::from_utf8(data).map(str::trim).unwrap_or_default();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert!(got.is_some(), "delay-seconds refused");
    }
}

/// Key-auth's percent-decoding of a query key: never longer than its
/// input, and the inverse of percent-encoding every byte.
pub fn key_auth_decode(data: &[u8]) {
    let out = percent_decode(data);
    assert!(out.len() <= data.len());
    let encoded: String = data.iter().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(&*percent_decode(encoded.as_bytes()), data, "round trip");
}

const WIRES: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Responses];
const APIS: [Api; 3] = [Api::Chat, Api::Embeddings, Api::Responses];

/// A provider's non-streamed answer (and error answer) mapped to the
/// client's format: the first byte picks the formats, API and whether the
/// raw usage is kept. What is built is JSON; the same format passes
/// through untouched.
pub fn provider_answer(input: &[u8]) {
    let Some((pick, body)) = input.split_first() else {
        return;
    };
    let p = usize::from(*pick);
    let (from, to, api) = (WIRES[p % 3], WIRES[p / 3 % 3], APIS[p / 9 % 3]);
    let keep = p / 27 % 2 == 1;
    match convert_response(from, to, api, body, keep) {
        Ok(c) => {
            if from == to {
                assert!(c.body.is_none(), "same format must pass through");
            }
            if let Some(b) = &c.body {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(b) {
                    panic!(
                        "{from:?}->{to:?}: not JSON ({e}): {}",
                        String::from_utf8_lossy(b)
                    );
                }
            }
            if let Some(u) = &c.raw_usage {
                assert!(u.is_object() && keep);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let err = convert_error(from, to, 500, body);
    assert!(serde_json::from_slice::<serde_json::Value>(&err).is_ok());
}

/// The GCP token endpoint's answer: a token fit for a header, kept at most
/// a day and at most `max_ttl` (picked by the first byte).
pub fn gcp_token(input: &[u8]) {
    let Some((pick, body)) = input.split_first() else {
        return;
    };
    let max_ttl = (pick % 2 == 1).then(|| Duration::from_secs(u64::from(*pick) * 7));
    let early = Duration::from_secs(u64::from(pick / 4));
    if let Ok((token, keep)) = token_answer(body, max_ttl, early) {
        assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
        assert!(keep <= DAY, "{keep:?}");
        if let Some(m) = max_ttl {
            assert!(keep <= m);
        }
    }
}
