//! Taking in an LLM request: the body must be JSON (by `Content-Type` and
//! by content), complete and within the size limit; the route path says
//! which API and format the client speaks (`…/embeddings`, Anthropic's
//! `…/messages`, OpenAI's Responses API `…/responses`, otherwise OpenAI
//! chat). Only what routing needs is read
//! from the body (model, stream flag).

use crate::http::RequestHead;
use crate::providers::wire::ClientBody;
use crate::providers::{Api, Wire};
use crate::proxy::body::read_all;
use crate::proxy::ProxyError;
use crate::server::conn::ClientConn;
use crate::server::worker::Worker;

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

/// Reads and checks the request; `max_body` is the route's body limit
/// (`max_req_body_size`, else the gateway's).
pub async fn intake(
    w: &Worker,
    c: &mut ClientConn,
    head: &RequestHead,
    max_body: u64,
) -> Result<LlmRequest, Refused> {
    let path = head.path();
    let (api, wire) = if path.ends_with(b"/embeddings") {
        (Api::Embeddings, Wire::OpenAi)
    } else if path.ends_with(b"/messages") {
        (Api::Chat, Wire::Anthropic)
    } else if path.ends_with(b"/responses") {
        (Api::Responses, Wire::Responses)
    } else {
        (Api::Chat, Wire::OpenAi)
    };
    let json = head.header("content-type").is_some_and(|ct| {
        let mime = crate::http::headers::trim(ct.split(|&b| b == b';').next().unwrap_or(b""));
        mime.eq_ignore_ascii_case(b"application/json")
            || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
    });
    let gw = &w.gateway;
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
