//! `vertex-ai`: Google Vertex AI through its OpenAI-compatible endpoint,
//! built from `provider_conf.project_id` and `provider_conf.region`
//! (`global` uses the global host). Auth is usually `auth.gcp`: a service
//! account exchanged for OAuth access tokens (see [`super::gcp`]).

use super::registry::{Provider, ProviderConf};
use super::{Api, Wire};

pub const PROVIDER: Provider = Provider {
    name: "vertex-ai",
    wire: Wire::OpenAi,
    endpoint,
    responses: false,
    extra_headers: &[],
    endpoint_required: true,
};

fn endpoint(api: Api, conf: &ProviderConf) -> Result<String, String> {
    let (Some(project), Some(region)) = (&conf.project_id, &conf.region) else {
        return Err("provider `vertex-ai` needs `provider_conf.project_id` and `provider_conf.region`, or `override.endpoint`".into());
    };
    if api == Api::Embeddings {
        return Err(
            "provider `vertex-ai` has no default embeddings endpoint: set `override.endpoint`"
                .into(),
        );
    }
    let host = if region == "global" {
        "aiplatform.googleapis.com".to_owned()
    } else {
        format!("{region}-aiplatform.googleapis.com")
    };
    Ok(format!(
        "https://{host}/v1/projects/{project}/locations/{region}/endpoints/openapi/chat/completions"
    ))
}
