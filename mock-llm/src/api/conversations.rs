//! OpenAI Conversations API, stored per instance like per account:
//! `POST …/conversations` (with optional `items` and `metadata`), `GET` /
//! `POST` (metadata) / `DELETE …/conversations/{id}`, and `GET` / `POST
//! …/conversations/{id}/items`. A response created with `conversation`
//! adds its input and output to it (see [`super::responses`]); ids this
//! instance does not hold get `404`.

use serde_json::{json, Value};

use super::responses::{send_api_error, send_found, unknown_url, with_ids};
use super::{unix_now, After};
use crate::http::{Conn, Request};
use crate::state::{Shared, StoredConversation};

/// `…/conversations[/{id}[/{rest}]]` of a path: the id (if any) and what
/// follows it.
pub fn conversations_path(path: &str) -> Option<(Option<&str>, &str)> {
    if path.ends_with("/conversations") {
        return Some((None, ""));
    }
    let at = path.find("/conversations/")?;
    let after = &path[at + "/conversations/".len()..];
    let (id, rest) = after.split_once('/').unwrap_or((after, ""));
    (!id.is_empty()).then_some((Some(id), rest))
}

/// The "no such conversation" answer (also for a response naming one).
pub async fn not_found(sh: &Shared, conn: &mut Conn, req: &Request, id: &str) -> After {
    let msg = format!("Conversation with id '{id}' not found.");
    send_api_error(sh, conn, req, 404, &msg, Some("conversation"), None).await
}

pub async fn handle(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    id: Option<&str>,
    rest: &str,
) -> After {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or_else(|_| json!({}));
    let out = match (req.method.as_str(), id, rest) {
        ("POST", None, _) => {
            let seq = sh.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("conv_{}_{seq}", sh.name());
            let conversation = json!({"id": id, "object": "conversation", "created_at": unix_now(),
                "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({}))});
            let items = body
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let stored = StoredConversation {
                conversation: conversation.clone(),
                items: with_ids(items, seq),
            };
            sh.conversation_store().put(id, stored);
            conversation
        }
        (method, Some(id), rest) => match on_stored(sh, req, &body, method, id, rest) {
            Some(Ok(v)) => v,
            Some(Err(msg)) => return send_api_error(sh, conn, req, 404, &msg, None, None).await,
            None => return not_found(sh, conn, req, id).await,
        },
        _ => return unknown_url(sh, conn, req).await,
    };
    send_found(sh, conn, req, &out).await
}

/// A call on stored conversation `id`: its answer, `Err` for an unknown
/// call, `None` when the instance does not hold it.
fn on_stored(
    sh: &Shared,
    req: &Request,
    body: &Value,
    method: &str,
    id: &str,
    rest: &str,
) -> Option<Result<Value, String>> {
    let mut store = sh.conversation_store();
    let c = store.get_mut(id)?;
    Some(Ok(match (method, rest) {
        ("GET", "") => c.conversation.clone(),
        ("POST", "") => {
            if let Some(m) = body.get("metadata") {
                c.conversation["metadata"] = m.clone();
            }
            c.conversation.clone()
        }
        ("DELETE", "") => {
            store.remove(id);
            json!({"id": id, "object": "conversation.deleted", "deleted": true})
        }
        ("GET", "items") => {
            let mut items = c.items.clone();
            if req.query_param("order") != Some("asc") {
                items.reverse();
            }
            list(items)
        }
        ("POST", "items") => {
            let seq = sh.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let added = with_ids(
                body.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                seq,
            );
            c.items.extend(added.iter().cloned());
            list(added)
        }
        _ => {
            return Some(Err(format!(
                "Unknown request URL: {} {}.",
                req.method, req.path
            )))
        }
    }))
}

fn list(items: Vec<Value>) -> Value {
    let first = items.first().and_then(|i| i.get("id")).cloned();
    let last = items.last().and_then(|i| i.get("id")).cloned();
    json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_paths() {
        assert_eq!(conversations_path("/v1/conversations"), Some((None, "")));
        assert_eq!(
            conversations_path("/v1/conversations/conv_1"),
            Some((Some("conv_1"), ""))
        );
        assert_eq!(
            conversations_path("/v1/conversations/conv_1/items"),
            Some((Some("conv_1"), "items"))
        );
        assert_eq!(conversations_path("/v1/conversations/"), None);
        assert_eq!(conversations_path("/v1/responses"), None);
    }
}
