//! What a request path asks of the plugin ([`classify`]) and taking in an
//! LLM request: the body must be JSON (by `Content-Type` and by content),
//! complete and within the size limit; the route path says which API and
//! format the client speaks (`…/embeddings`, Anthropic's `…/messages`,
//! OpenAI's Responses API `…/responses`, otherwise OpenAI chat), or that
//! it is a call on stored state (`…/responses/{id}…`, `…/conversations…`).
//! Only what routing needs is read from the body (model, stream flag).

use super::stored::{stored_call, Family};
use crate::exchange::body::read_all;
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::RequestHead;
use crate::lane::Lane;
use crate::providers::{Api, Wire};
use crate::wire::ClientBody;

pub struct LlmRequest {
    /// The body, validated, with what routing needs read from it.
    pub body: ClientBody,
    pub api: Api,
    /// The format the client speaks (and gets answers in).
    pub wire: Wire,
}

/// Why a request was refused before any instance was tried.
pub enum Refused {
    /// Answer with this status and message (`keep` = the body was consumed).
    Reply {
        status: u16,
        message: String,
        keep: bool,
    },
    ClientGone,
}

/// What a request path asks of the plugin.
pub enum PathKind<'p> {
    /// An LLM request in this API and client format.
    Llm(Api, Wire),
    /// A call on stored state, with what follows the family's name.
    Stored(Family, &'p [u8]),
}

/// Reads a request path: chat paths (the common case, ending in
/// `/completions`) first, then calls on stored state, then the other
/// APIs by suffix; anything else is chat.
pub fn classify(path: &[u8]) -> PathKind<'_> {
    if path.ends_with(b"/completions") {
        return PathKind::Llm(Api::Chat, Wire::OpenAi);
    }
    if let Some((family, rest)) = stored_call(path) {
        return PathKind::Stored(family, rest);
    }
    let (api, wire) = if path.ends_with(b"/embeddings") {
        (Api::Embeddings, Wire::OpenAi)
    } else if path.ends_with(b"/messages") {
        (Api::Chat, Wire::Anthropic)
    } else if path.ends_with(b"/responses") {
        (Api::Responses, Wire::Responses)
    } else {
        (Api::Chat, Wire::OpenAi)
    };
    PathKind::Llm(api, wire)
}

/// Reads and checks the request for `api` in format `wire` (see
/// [`classify`]); `max_body` is the route's body limit
/// (`max_req_body_size`, else the gateway's).
pub async fn intake(
    lane: &Lane,
    c: &mut ClientConn,
    head: &RequestHead,
    (api, wire): (Api, Wire),
    max_body: u64,
) -> Result<LlmRequest, Refused> {
    let json = head.header("content-type").is_some_and(|ct| {
        let mime = crate::http::headers::trim(ct.split(|&b| b == b';').next().unwrap_or(b""));
        mime.eq_ignore_ascii_case(b"application/json")
            || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
    });
    let gw = &lane.gateway;
    let body = read_all(
        c,
        head.framing,
        head.expect_continue && json,
        max_body,
        gw.timeouts.body,
        gw.timeouts.send,
    )
    .await;
    let body = match body {
        Ok(b) => b,
        Err(ProxyError::ClientGone) => return Err(Refused::ClientGone),
        Err(e) => {
            return Err(Refused::Reply {
                status: e.status(),
                message: e.to_string(),
                keep: false,
            })
        }
    };
    if !json {
        return Err(Refused::Reply {
            status: 400,
            message: "Content-Type must be application/json".into(),
            keep: true,
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refused::Reply {
            status: 400,
            message: "request body is empty; expected a JSON object".into(),
            keep: true,
        });
    }
    let body = ClientBody::parse(wire, body).map_err(|e| Refused::Reply {
        status: 400,
        message: e.to_string(),
        keep: true,
    })?;
    Ok(LlmRequest { body, api, wire })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_say_which_api_or_stored_call() {
        let llm = |p: &[u8]| match classify(p) {
            PathKind::Llm(api, wire) => Some((api, wire)),
            PathKind::Stored(..) => None,
        };
        assert_eq!(
            llm(b"/v1/chat/completions"),
            Some((Api::Chat, Wire::OpenAi))
        );
        assert_eq!(
            llm(b"/v1/embeddings"),
            Some((Api::Embeddings, Wire::OpenAi))
        );
        assert_eq!(llm(b"/v1/messages"), Some((Api::Chat, Wire::Anthropic)));
        assert_eq!(
            llm(b"/v1/responses"),
            Some((Api::Responses, Wire::Responses))
        );
        assert_eq!(llm(b"/anything"), Some((Api::Chat, Wire::OpenAi)));
        assert!(matches!(
            classify(b"/v1/responses/resp_1"),
            PathKind::Stored(Family::Responses, b"resp_1")
        ));
        assert!(matches!(
            classify(b"/v1/conversations"),
            PathKind::Stored(Family::Conversations, b"")
        ));
    }
}
