//! Admin API calls from tests: a key, a method, a path and a JSON body,
//! over a fresh raw connection (so every call is one exchange).

use super::{Conn, Gateway};
use mock_llm::client::Response;

/// The Admin API key test gateways are started with.
pub const KEY: &str = "test-admin-key";

/// `{"gateway": {"admin": …}}` fragment enabling the Admin API on a
/// kernel-chosen loopback port with [`KEY`].
pub fn enabled() -> serde_json::Value {
    serde_json::json!({"listen": "127.0.0.1:0", "key": KEY})
}

/// Sends `method path` with `body` (may be empty) and [`KEY`].
pub fn call(gw: &Gateway, method: &str, path: &str, body: &str) -> Response {
    let addr = gw.admin_addr.expect("admin API enabled");
    let mut c = Conn::connect(addr);
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nX-API-KEY: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response()
}
