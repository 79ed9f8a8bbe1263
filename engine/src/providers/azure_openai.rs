//! `azure-openai`: Azure OpenAI: the deployment URL (`/openai/deployments/{deployment}/chat/completions?api-version=…`, or `/embeddings`) differs per resource, so `override.endpoint` is required; auth is the `api-key` header.

use super::registry::{fixed_endpoint, Provider};
use super::Wire;

pub const PROVIDER: Provider = Provider {
    name: "azure-openai",
    wire: Wire::OpenAi,
    endpoint: |api, _| fixed_endpoint("azure-openai", api, None, None, None),
    responses: true,
    extra_headers: &[],
    endpoint_required: false,
};
