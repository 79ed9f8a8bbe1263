//! TEMPORARY stand-in for `wire` (OpenAI ⇄ OpenAI only, via serde_json)
//! until the sans-IO wire module is merged; same API, so the relay does not
//! change when it is swapped out.

use serde_json::{Map, Value};

pub use super::kinds::{Api, Wire};

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

#[derive(Debug, Clone, Default)]
pub struct RequestSummary {
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
}

pub fn summarize(_wire: Wire, body: &[u8]) -> Result<RequestSummary, WireError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WireError(format!("request body is not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| WireError("request body must be a JSON object".into()))?;
    Ok(RequestSummary {
        model: o.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: o.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: o
            .get("stream_options")
            .and_then(|s| s.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_tokens: o.get("max_tokens").and_then(Value::as_u64),
    })
}

pub fn build_request(
    from: Wire,
    to: Wire,
    _api: Api,
    body: &[u8],
    options: &Map<String, Value>,
    force_usage: bool,
) -> Result<Vec<u8>, WireError> {
    if from != to {
        return Err(WireError(
            "format conversion is not available in this build".into(),
        ));
    }
    let mut v: Value = serde_json::from_slice(body).map_err(|e| WireError(e.to_string()))?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| WireError("not an object".into()))?;
    for (k, val) in options {
        o.insert(k.clone(), val.clone());
    }
    if force_usage {
        let so = o
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(so) = so.as_object_mut() {
            so.insert("include_usage".into(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&v).map_err(|e| WireError(e.to_string()))
}

pub struct ConvertedResponse {
    pub body: Option<Vec<u8>>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
}

pub fn convert_response(
    from: Wire,
    to: Wire,
    _api: Api,
    body: &[u8],
) -> Result<ConvertedResponse, WireError> {
    if from != to {
        return Err(WireError(
            "format conversion is not available in this build".into(),
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WireError(format!("upstream body is not JSON: {e}")))?;
    Ok(ConvertedResponse {
        body: None,
        usage: usage_of(&v),
        model: v.get("model").and_then(Value::as_str).map(str::to_owned),
    })
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let p = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let c = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: u
            .get("total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(p + c),
    })
}

pub fn convert_error(_from: Wire, _to: Wire, _status: u16, body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

#[derive(Default, Debug, Clone)]
pub struct StreamObservations {
    pub first_token: bool,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub done: bool,
}

pub struct StreamTransform {
    strip_usage_chunk: bool,
    pending: Vec<u8>,
}

impl StreamTransform {
    pub fn new(_from: Wire, _to: Wire, strip_usage_chunk: bool) -> StreamTransform {
        StreamTransform {
            strip_usage_chunk,
            pending: Vec::new(),
        }
    }

    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        self.pending.extend_from_slice(input);
        while let Some(end) = find(&self.pending, b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let mut keep = true;
            for line in event.split(|&b| b == b'\n') {
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if data == b"[DONE]" {
                    obs.done = true;
                    continue;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    if obs.model.is_none() {
                        obs.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
                    }
                    if let Some(u) = usage_of(&v).filter(|_| !v["usage"].is_null()) {
                        obs.usage = Some(u);
                        if self.strip_usage_chunk
                            && v["choices"].as_array().is_some_and(Vec::is_empty)
                        {
                            keep = false;
                        }
                    }
                    if v["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty())
                    {
                        obs.first_token = true;
                    }
                }
            }
            if keep {
                out.extend_from_slice(&event);
            }
        }
        Ok(())
    }

    pub fn finish(
        &mut self,
        out: &mut Vec<u8>,
        _obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        out.append(&mut self.pending);
        Ok(())
    }

    pub fn error_event(&self, message: &str, out: &mut Vec<u8>) {
        let v = serde_json::json!({"error": {"message": message, "type": "upstream_error", "code": "upstream_error"}});
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(v.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
