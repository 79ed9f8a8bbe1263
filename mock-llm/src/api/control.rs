//! The test-facing endpoints: `GET /_stats`, `GET|DELETE /_requests`,
//! `GET|POST /_control`, and Google's OAuth2 token endpoint
//! (`POST /oauth2/token`) for service-account auth tests. None of these are
//! recorded or counted as model requests.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::After;
use crate::config::Faults;
use crate::http::{response, Conn, Request};
use crate::state::Shared;

/// `POST /_control` body: faults, plus `for_secs` and `clear`.
struct ControlBody {
    faults: Faults,
    for_secs: Option<u64>,
    clear: Option<bool>,
}

fn parse_control(body: &[u8]) -> Result<ControlBody, String> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let for_secs = match v.remove("for_secs") {
        None => None,
        Some(x) => Some(x.as_u64().ok_or("for_secs must be a number of seconds")?),
    };
    let clear = match v.remove("clear") {
        None => None,
        Some(x) => Some(x.as_bool().ok_or("clear must be a boolean")?),
    };
    let faults = Faults::deserialize(serde_json::Value::Object(v)).map_err(|e| e.to_string())?;
    Ok(ControlBody {
        faults,
        for_secs,
        clear,
    })
}

async fn send(conn: &mut Conn, req: &Request, status: u16, body: serde_json::Value) -> After {
    let out = response(
        status,
        "application/json",
        body.to_string().as_bytes(),
        req.keep_alive,
        &[],
    );
    if conn.write(out).await.is_ok() && req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

pub async fn handle(sh: &Shared, conn: &mut Conn, req: &Request) -> After {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_stats") => send(conn, req, 200, json!(sh.stats())).await,
        ("GET", "/_requests") => send(conn, req, 200, json!(sh.requests())).await,
        ("DELETE", "/_requests") => {
            sh.clear_requests();
            send(conn, req, 200, json!({"cleared": true})).await
        }
        ("GET", "/_control") => send(conn, req, 200, json!(sh.faults())).await,
        ("POST", "/_control") => match parse_control(&req.body) {
            Ok(c) if c.clear == Some(true) => {
                sh.set_faults(Faults::default(), None);
                send(conn, req, 200, json!(Faults::default())).await
            }
            Ok(c) => {
                sh.set_faults(c.faults.clone(), c.for_secs.map(Duration::from_secs));
                send(conn, req, 200, json!(c.faults)).await
            }
            Err(e) => send(conn, req, 400, json!({"error": {"message": format!("bad control body: {e}"), "type": "invalid_request_error"}})).await,
        },
        _ => send(conn, req, 405, json!({"error": {"message": "method not allowed", "type": "invalid_request_error"}})).await,
    }
}

/// Google's OAuth2 JWT-bearer grant, as `auth.gcp` uses it.
pub async fn token(sh: &Shared, conn: &mut Conn, req: &Request) -> After {
    let form = String::from_utf8_lossy(&req.body);
    let grant = form.split('&').find_map(|p| p.strip_prefix("grant_type="));
    let assertion = form.split('&').find_map(|p| p.strip_prefix("assertion="));
    if grant != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        && grant != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return send(conn, req, 400, json!({"error": "unsupported_grant_type"})).await;
    }
    if assertion.is_none_or(|a| a.split('.').count() != 3) {
        return send(
            conn,
            req,
            400,
            json!({"error": "invalid_grant", "error_description": "assertion must be a JWT"}),
        )
        .await;
    }
    let n = sh
        .token_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    sh.record(crate::state::RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.to_pairs(),
        body: form.into_owned(),
    });
    send(
        conn,
        req,
        200,
        json!({"access_token": format!("mock-token-{n}"), "expires_in": sh.config.token_expires_in, "token_type": "Bearer"}),
    )
    .await
}
