//! `anthropic`: Anthropic's Messages API (`x-api-key` via `auth.header`). Clients keep speaking OpenAI chat; requests, responses and streams are mapped by `wire`.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "anthropic",
    wire: Wire::Anthropic,
    endpoint: |api, _| {
        fixed_endpoint(
            "anthropic",
            api,
            Some("https://api.anthropic.com/v1/messages"),
            None,
            None,
        )
    },
    responses: false,
    extra_headers: &[("anthropic-version", "2023-06-01")],
    endpoint_required: false,
};
