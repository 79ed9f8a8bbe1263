//! `deepseek`: DeepSeek's OpenAI-compatible API (chat only).

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "deepseek",
    wire: Wire::OpenAi,
    endpoint: |api, _| {
        fixed_endpoint(
            "deepseek",
            api,
            Some("https://api.deepseek.com/chat/completions"),
            None,
            None,
        )
    },
    responses: false,
    extra_headers: &[],
    endpoint_required: false,
};
