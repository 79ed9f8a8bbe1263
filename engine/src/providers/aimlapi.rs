//! `aimlapi`: AI/ML API, OpenAI-compatible.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "aimlapi",
    wire: Wire::OpenAi,
    endpoint: |api, _| {
        fixed_endpoint(
            "aimlapi",
            api,
            Some("https://api.aimlapi.com/v1/chat/completions"),
            Some("https://api.aimlapi.com/v1/embeddings"),
            None,
        )
    },
    responses: false,
    extra_headers: &[],
    endpoint_required: false,
};
