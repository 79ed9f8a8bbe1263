//! The providers ringway speaks to, by APISIX name, and what each one
//! owns: its default endpoints, the wire format it speaks, whether it
//! serves OpenAI's Responses API, and any headers it requires. Auth comes from the instance's `auth` config, except
//! `vertex-ai`'s `auth.gcp`, handled by [`super::gcp`].

use super::{Api, Wire};

/// `provider_conf` (APISIX: vertex-ai's project and region).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderConf {
    pub project_id: Option<String>,
    pub region: Option<String>,
}

/// One LLM provider (each defined in its own file).
#[derive(Debug)]
pub struct Provider {
    pub name: &'static str,
    pub wire: Wire,
    /// The default endpoint for an API, or why there is none (then
    /// `override.endpoint` is required).
    pub endpoint: fn(Api, &ProviderConf) -> Result<String, String>,
    /// Serves OpenAI's Responses API (`/v1/responses`) as it is; other
    /// providers' instances get Responses requests converted to chat.
    pub responses: bool,
    /// Headers the API requires on every request.
    pub extra_headers: &'static [(&'static str, &'static str)],
    /// An instance without an endpoint (no default, no
    /// `override.endpoint`) is refused at load, as APISIX's
    /// `validate_provider_requirements` refuses `vertex-ai` without
    /// `provider_conf`. Other providers' instances load without one, as in
    /// APISIX, and requests to them fail.
    pub endpoint_required: bool,
}

/// Every provider; adding one is a file and a line here.
pub const PROVIDERS: &[Provider] = &[
    super::openai::PROVIDER,
    super::deepseek::PROVIDER,
    super::azure_openai::PROVIDER,
    super::aimlapi::PROVIDER,
    super::anthropic::PROVIDER,
    super::openrouter::PROVIDER,
    super::gemini::PROVIDER,
    super::vertex_ai::PROVIDER,
    super::openai_compatible::PROVIDER,
];

/// The provider called `name`.
pub fn lookup(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// All provider names, for error messages.
pub fn names() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Provider {
    /// The default endpoint for `api`, or why there is none.
    pub fn default_endpoint(&self, api: Api, conf: &ProviderConf) -> Result<String, String> {
        if api == Api::Responses && !self.responses {
            return Err(self.no_responses());
        }
        (self.endpoint)(api, conf)
    }

    /// Why this provider's instances take no Responses API requests.
    fn no_responses(&self) -> String {
        let serving: Vec<_> = PROVIDERS
            .iter()
            .filter(|p| p.responses)
            .map(|p| p.name)
            .collect();
        format!(
            "provider `{}` does not serve the OpenAI Responses API (providers that do: {})",
            self.name,
            serving.join(", ")
        )
    }
}

/// Endpoint lookup for providers with fixed URLs (`responses`: the
/// Responses API's, for providers that serve it).
pub fn fixed_endpoint(
    name: &str,
    api: Api,
    chat: Option<&str>,
    embeddings: Option<&str>,
    responses: Option<&str>,
) -> Result<String, String> {
    let url = match api {
        Api::Chat => chat,
        Api::Embeddings => embeddings,
        Api::Responses => responses,
    };
    url.map(str::to_owned).ok_or_else(|| match api {
        Api::Chat => format!("provider `{name}` has no default endpoint: set `override.endpoint`"),
        Api::Embeddings | Api::Responses => format!(
            "provider `{name}` has no default {} endpoint: set `override.endpoint`",
            api.label()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let none = ProviderConf::default();
        assert_eq!(
            lookup("openai")
                .unwrap()
                .default_endpoint(Api::Embeddings, &none)
                .unwrap(),
            "https://api.openai.com/v1/embeddings"
        );
        assert!(lookup("openai-compatible")
            .unwrap()
            .default_endpoint(Api::Chat, &none)
            .is_err());
        assert!(lookup("deepseek")
            .unwrap()
            .default_endpoint(Api::Embeddings, &none)
            .is_err());
        let conf = ProviderConf {
            project_id: Some("p1".into()),
            region: Some("us-central1".into()),
        };
        assert_eq!(
            lookup("vertex-ai").unwrap().default_endpoint(Api::Chat, &conf).unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/endpoints/openapi/chat/completions"
        );
        assert_eq!(lookup("anthropic").unwrap().wire, Wire::Anthropic);
        assert_eq!(
            lookup("openai")
                .unwrap()
                .default_endpoint(Api::Responses, &none)
                .unwrap(),
            "https://api.openai.com/v1/responses"
        );
        let why = lookup("deepseek")
            .unwrap()
            .default_endpoint(Api::Responses, &none)
            .unwrap_err();
        assert!(
            why.contains("`deepseek` does not serve")
                && why.contains("openai, azure-openai, openai-compatible"),
            "{why}"
        );
        assert!(lookup("openai-compatible")
            .unwrap()
            .default_endpoint(Api::Responses, &none)
            .unwrap_err()
            .contains("set `override.endpoint`"));
        assert!(lookup("bedrock").is_none());
        assert_eq!(PROVIDERS.len(), 9);
    }
}
