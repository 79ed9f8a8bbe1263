//! Responses API follow-ups: whether a request names stored state (a
//! previous response, a conversation) and which instance is remembered as
//! holding it, and whether an instance's error answer says it does not.

use super::request::LlmRequest;
use super::AiProxyMulti;

/// Whether a Responses API request follows up on stored state — a
/// response (`previous_response_id`) or a conversation (`conversation`,
/// Conversations API) — and the instance remembered as holding it.
#[cold]
#[inline(never)]
pub(super) fn follow_up(plugin: &AiProxyMulti, req: &LlmRequest) -> (bool, Option<usize>) {
    let named = req
        .body
        .top_str("previous_response_id")
        .or_else(|| req.body.top_id("conversation"));
    match named {
        Some(id) => (
            true,
            plugin.affinity.recall(id.as_bytes(), &plugin.instances),
        ),
        None => (false, None),
    }
}

/// Whether an error answer to a follow-up says the instance does not hold
/// the state it names: `404` (a conversation not found), or an error about
/// `previous_response_id` / `conversation` (OpenAI: `400`, code
/// `previous_response_not_found`).
pub fn says_not_held(status: u16, body: &[u8]) -> bool {
    status == 404 || names_held_state(body)
}

fn names_held_state(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        error: Option<Error<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Error<'a> {
        #[serde(borrow, default)]
        code: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        param: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Body<'_>>(body)
        .ok()
        .and_then(|b| b.error)
        .is_some_and(|e| {
            e.code.as_deref() == Some("previous_response_not_found")
                || matches!(
                    e.param.as_deref(),
                    Some("previous_response_id" | "conversation")
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_says_an_instance_does_not_hold_a_follow_ups_state() {
        let e = |param: &str, code: &str| {
            format!(
                r#"{{"error":{{"message":"m","type":"invalid_request_error","param":{param},"code":{code}}}}}"#
            )
        };
        // OpenAI's answer to an unknown previous response.
        assert!(says_not_held(
            400,
            e(
                r#""previous_response_id""#,
                r#""previous_response_not_found""#
            )
            .as_bytes()
        ));
        assert!(says_not_held(
            400,
            e("null", r#""previous_response_not_found""#).as_bytes()
        ));
        assert!(says_not_held(
            400,
            e(r#""previous_response_id""#, "null").as_bytes()
        ));
        assert!(says_not_held(
            400,
            e(r#""conversation""#, "null").as_bytes()
        ));
        // A conversation (or anything a follow-up names) not found.
        assert!(says_not_held(404, b"not json"));
        // Other refusals are the request's own.
        assert!(!says_not_held(400, e(r#""input""#, "null").as_bytes()));
        assert!(!says_not_held(400, b"{}"));
        assert!(!says_not_held(400, b"not json"));
    }
}
