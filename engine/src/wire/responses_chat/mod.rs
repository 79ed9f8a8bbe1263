//! OpenAI's Responses API over a chat-completions provider: a Responses
//! request becomes a chat request ([`request_to_chat`]), a chat answer a
//! Responses answer ([`answer_to_responses`]), and a chat stream the
//! Responses API's event sequence ([`ChatToResponses`]), so a client of
//! the Responses API can be served — and fall back — by any provider
//! (Anthropic's through the chat mapping of [`super::map`]).
//!
//! What has no chat equivalent is refused rather than dropped:
//! `previous_response_id` and `conversation` (server-side state), built-in
//! tools (web search, file search, …) and input items other than messages,
//! function calls and their outputs.

mod answer;
mod request;
mod stream;

pub use answer::{answer_to_responses, usage_to_responses};
pub use request::request_to_chat;
pub use stream::{ChatToResponses, ChunkSeen};

#[cfg(test)]
mod tests;
