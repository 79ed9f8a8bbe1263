//! LLM providers: one file per provider (default endpoint, auth style, wire
//! format and quirks), plus the shared wire formats they speak
//! ([`wire`]: OpenAI chat/embeddings and Anthropic Messages, with request,
//! response and stream conversion between them and usage extraction) and
//! zero-copy request-body editing ([`body`]).

pub mod body;
pub mod wire;
