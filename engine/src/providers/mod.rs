//! LLM providers: one file per provider (default endpoints, wire format,
//! required headers), listed in [`registry`], plus the shared wire formats they speak
//! ([`wire`]: OpenAI chat/embeddings, OpenAI's Responses API and Anthropic
//! Messages, with request, response and stream conversion between them and
//! usage extraction) and
//! zero-copy request-body editing ([`body`]).

pub mod aimlapi;
pub mod anthropic;
pub mod azure_openai;
pub mod deepseek;
pub mod gcp;
pub mod gemini;
pub mod openai;
pub mod openai_compatible;
pub mod openrouter;
pub mod registry;
pub mod url;
pub mod vertex_ai;

pub use crate::wire::{Api, Wire};
pub use registry::{lookup, Provider, ProviderConf};
pub use url::EndpointUrl;
