//! `gemini`: Google Gemini through its OpenAI-compatible endpoint.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "gemini",
    wire: Wire::OpenAi,
    endpoint: |api, _| {
        fixed_endpoint(
            "gemini",
            api,
            Some("https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
            Some("https://generativelanguage.googleapis.com/v1beta/openai/embeddings"),
            None,
        )
    },
    responses: false,
    extra_headers: &[],
    endpoint_required: false,
};
