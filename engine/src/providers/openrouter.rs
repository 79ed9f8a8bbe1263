//! `openrouter`: OpenRouter, OpenAI-compatible.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "openrouter",
    wire: Wire::OpenAi,
    endpoint: |api, _| {
        fixed_endpoint(
            "openrouter",
            api,
            Some("https://openrouter.ai/api/v1/chat/completions"),
            Some("https://openrouter.ai/api/v1/embeddings"),
            None,
        )
    },
    responses: false,
    extra_headers: &[],
    endpoint_required: false,
};
