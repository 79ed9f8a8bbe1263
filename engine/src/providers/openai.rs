//! `openai`: OpenAI's API (`Authorization: Bearer …` via `auth.header`).

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "openai",
    wire: Wire::OpenAi,
    endpoint: |api, _| {
        fixed_endpoint(
            "openai",
            api,
            Some("https://api.openai.com/v1/chat/completions"),
            Some("https://api.openai.com/v1/embeddings"),
            Some("https://api.openai.com/v1/responses"),
        )
    },
    responses: true,
    extra_headers: &[],
    endpoint_required: false,
};
