//! Stored-state paths: which family a call is about (`…/responses/…`,
//! `…/conversations…`), the check that what follows is plain segments,
//! and where the family's calls go at an instance. Sans IO.

/// What stored state a call is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    /// `…/responses/{id}[/…]`, `…/responses/{name}`.
    Responses,
    /// `…/conversations[/{id}[/items[/{item_id}]]]` (Conversations API).
    Conversations,
}

impl Family {
    /// Most path segments after the family's name.
    pub(super) fn max_segments(self) -> usize {
        match self {
            Family::Responses => 2,
            Family::Conversations => 3,
        }
    }

    pub(super) fn expected(self) -> &'static str {
        match self {
            Family::Responses => "…/responses/{id}[/input_items|/cancel]",
            Family::Conversations => "…/conversations[/{id}[/items[/{item_id}]]]",
        }
    }
}

/// A call on stored state: its family and what follows `/responses/` or
/// `/conversations/` (empty: creating a conversation).
pub fn stored_call(path: &[u8]) -> Option<(Family, &[u8])> {
    if path.ends_with(b"/conversations") {
        return Some((Family::Conversations, b""));
    }
    for (mark, family) in [
        (&b"/responses/"[..], Family::Responses),
        (&b"/conversations/"[..], Family::Conversations),
    ] {
        if let Some(at) = path.windows(mark.len()).position(|w| w == mark) {
            let rest = &path[at + mark.len()..];
            return (!rest.is_empty()).then_some((family, rest));
        }
    }
    None
}

/// Up to `max` plain segments (`{id}`, `{id}/input_items`, `compact`).
pub(super) fn plain_segments(rest: &[u8], max: usize) -> bool {
    let mut n = 0;
    for seg in rest.split(|&b| b == b'/') {
        n += 1;
        let plain = !seg.is_empty()
            && seg
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain || n > max {
            return false;
        }
    }
    true
}

/// Where the family's calls go for an instance whose Responses endpoint
/// path is `responses` (no query): that path, or its sibling
/// `…/conversations`; `None` if the endpoint is not a `…/responses` one.
pub(super) fn family_base(family: Family, responses: &str) -> Option<String> {
    let base = responses.trim_end_matches('/');
    match family {
        Family::Responses => Some(base.to_owned()),
        Family::Conversations => base
            .strip_suffix("/responses")
            .map(|b| format!("{b}/conversations")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_calls_and_their_paths() {
        use Family::*;
        assert_eq!(stored_call(b"/v1/responses"), None);
        assert_eq!(stored_call(b"/v1/responses/"), None);
        assert_eq!(stored_call(b"/v1/chat/completions"), None);
        assert_eq!(
            stored_call(b"/v1/responses/resp_1"),
            Some((Responses, &b"resp_1"[..]))
        );
        assert_eq!(
            stored_call(b"/openai/v1/responses/resp_1/input_items"),
            Some((Responses, &b"resp_1/input_items"[..]))
        );
        assert_eq!(
            stored_call(b"/v1/conversations"),
            Some((Conversations, &b""[..]))
        );
        assert_eq!(
            stored_call(b"/v1/conversations/conv_1/items/msg_2"),
            Some((Conversations, &b"conv_1/items/msg_2"[..]))
        );
        for ok in [
            &b"resp_1"[..],
            b"resp_1/cancel",
            b"compact",
            b"a-b_C9/input_items",
        ] {
            assert!(plain_segments(ok, 2), "{ok:?}");
        }
        assert!(plain_segments(b"conv_1/items/msg_2", 3));
        for bad in [
            &b"resp_1/../../files"[..],
            b"..",
            b"resp_1/",
            b"resp_1//x",
            b"resp_1/input_items/x",
            b"%2e%2e",
            b"resp.1",
        ] {
            assert!(!plain_segments(bad, 2), "{bad:?}");
        }
        assert_eq!(
            family_base(Conversations, "/openai/v1/responses").as_deref(),
            Some("/openai/v1/conversations")
        );
        assert_eq!(family_base(Conversations, "/v1/chat/completions"), None);
        assert_eq!(
            family_base(Responses, "/v1/responses/").as_deref(),
            Some("/v1/responses")
        );
    }
}
