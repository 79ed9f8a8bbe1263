//! Request templates: OpenAI chat (streaming or not), OpenAI embeddings,
//! Anthropic messages, OpenAI's Responses API; a prompt of N words; extra headers (consumer keys);
//! rendered once into the exact bytes every request sends.

use std::net::{SocketAddr, ToSocketAddrs};

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    Chat,
    Embeddings,
    Anthropic,
    /// OpenAI's Responses API.
    Responses,
}

/// A target URL, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub addr: SocketAddr,
    pub host: String,
    /// Path and query; empty when the URL had none.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| format!("{s}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let with_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("{s}: cannot resolve {host}"))?;
        Ok(Url {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub template: Template,
    pub stream: bool,
    pub prompt_words: usize,
    pub model: String,
    pub max_tokens: Option<u32>,
    pub headers: Vec<(String, String)>,
    /// A JSON object sent instead of the template's body (`--body`, e.g.
    /// a captured agent request); the template still gives the default
    /// path, `--stream` and `--max-tokens` still apply.
    pub body: Option<serde_json::Value>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            template: Template::Chat,
            stream: false,
            prompt_words: 16,
            model: "gpt-4o-mini".into(),
            max_tokens: None,
            headers: Vec::new(),
            body: None,
        }
    }
}

impl Workload {
    pub fn default_path(&self) -> &'static str {
        match self.template {
            Template::Chat => "/v1/chat/completions",
            Template::Embeddings => "/v1/embeddings",
            Template::Anthropic => "/v1/messages",
            Template::Responses => "/v1/responses",
        }
    }

    pub fn body(&self) -> String {
        if let Some(body) = &self.body {
            let mut v = body.clone();
            // The flag decides, whatever the captured body asked for.
            if self.stream || v.get("stream").is_some() {
                v["stream"] = json!(self.stream);
            }
            self.cap_tokens(&mut v);
            return v.to_string();
        }
        let prompt: String = (0..self.prompt_words)
            .map(|i| format!("word{i} "))
            .collect();
        let mut v = match self.template {
            Template::Chat => json!({
                "model": self.model,
                "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}],
            }),
            Template::Embeddings => json!({"model": self.model, "input": prompt}),
            Template::Anthropic => json!({
                "model": self.model,
                "max_tokens": self.max_tokens.unwrap_or(1024),
                "messages": [{"role": "user", "content": prompt}],
            }),
            Template::Responses => json!({
                "model": self.model,
                "instructions": "You are a helpful assistant.",
                "input": prompt,
            }),
        };
        if self.stream && self.template != Template::Embeddings {
            v["stream"] = json!(true);
        }
        self.cap_tokens(&mut v);
        v.to_string()
    }

    /// Reads `--body`: a file holding one JSON object.
    pub fn body_from_file(path: &str) -> Result<serde_json::Value, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("--body {path}: {e}"))?;
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(format!("--body {path}: not a JSON object")),
            Err(e) => Err(format!("--body {path}: not JSON: {e}")),
        }
    }

    fn cap_tokens(&self, v: &mut serde_json::Value) {
        match (self.max_tokens, self.template) {
            (Some(m), Template::Chat) => v["max_tokens"] = json!(m),
            (Some(m), Template::Responses) => v["max_output_tokens"] = json!(m),
            _ => {}
        }
    }

    /// The exact request bytes for `url`.
    pub fn request(&self, url: &Url) -> bytes::Bytes {
        let body = self.body();
        let path = if url.path.is_empty() {
            self.default_path()
        } else {
            url.path.as_str()
        };
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            url.host,
            body.len()
        );
        for (k, v) in &self.headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(&body);
        bytes::Bytes::from(r)
    }
}

/// `Name: value` → pair.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header `{s}` must look like `Name: value`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests() {
        let url = Url::parse("http://127.0.0.1:9080").unwrap();
        let w = Workload {
            stream: true,
            prompt_words: 3,
            headers: vec![("apikey".into(), "k".into())],
            ..Default::default()
        };
        let r = String::from_utf8(w.request(&url).to_vec()).unwrap();
        assert!(r.starts_with("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9080\r\n"));
        assert!(r.contains("apikey: k\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["messages"][1]["content"], "word0 word1 word2 ");
        // A captured body goes as it is, but `--stream` decides streaming.
        let captured =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "é\n"}]});
        let w = Workload {
            body: Some(captured.clone()),
            max_tokens: Some(7),
            ..Default::default()
        };
        let sent: serde_json::Value = serde_json::from_str(&w.body()).unwrap();
        assert_eq!(sent["stream"], false);
        assert_eq!(sent["max_tokens"], 7);
        assert_eq!(sent["messages"], captured["messages"]);
        let w = Workload {
            body: Some(json!({"model": "m"})),
            stream: true,
            ..Default::default()
        };
        assert_eq!(w.body(), r#"{"model":"m","stream":true}"#);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.json");
        for (text, err) in [("[1]", "not a JSON object"), ("{", "not JSON")] {
            std::fs::write(&file, text).unwrap();
            let e = Workload::body_from_file(file.to_str().unwrap()).unwrap_err();
            assert!(e.contains(err) && e.contains("b.json"), "{e}");
        }
        let u = Url::parse("http://localhost:18001/anything?x=1").unwrap();
        assert_eq!(u.path, "/anything?x=1");
        assert!(Url::parse("https://x").is_err());
        assert_eq!(
            parse_header("X-A: b c").unwrap(),
            ("X-A".into(), "b c".into())
        );
    }
}
