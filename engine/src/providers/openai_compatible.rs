//! `openai-compatible`: Any OpenAI-compatible service; `override.endpoint` is required.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "openai-compatible",
    wire: Wire::OpenAi,
    endpoint: |api, _| fixed_endpoint("openai-compatible", api, None, None, None),
    responses: true,
    extra_headers: &[],
    endpoint_required: false,
};
