//! The resource-server side: reading credentials off a request, the 401 challenge, and the
//! `whoami` diagnostic resource.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warden_identity::dpop::DpopError;
use warden_identity::verifier::{AuthError, Presentation};

use super::Authority;
use crate::unix_now;

/// Reads `Authorization: DPoP <token>` (or `Bearer`) and the `DPoP` header.
pub fn credentials(headers: &HeaderMap) -> Result<(&str, Option<&str>), AuthError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let token = auth
        .strip_prefix("DPoP ")
        .or_else(|| auth.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    let mut proofs = headers.get_all("dpop").iter();
    let proof = proofs.next().and_then(|v| v.to_str().ok());
    if proofs.next().is_some() {
        return Err(AuthError::Dpop(DpopError::Missing("a single DPoP header")));
    }
    Ok((token, proof))
}

/// A 401 with `WWW-Authenticate` naming the error and the resource metadata (RFC 9728 §5.1).
pub fn unauthorized(a: &Authority, resource: &str, e: &AuthError) -> Response {
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource{}",
        a.issuer,
        resource.strip_prefix(&a.issuer).unwrap_or("")
    );
    let desc = e.to_string().replace('"', "'");
    let challenge = format!(
        "DPoP algs=\"EdDSA\", error=\"{}\", error_description=\"{desc}\", resource_metadata=\"{metadata}\"",
        e.code()
    );
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": e.code(), "error_description": e.to_string()})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `GET /oauth/whoami?resource=<url>`: the resource-server check of every MCP request, on
/// a resource that answers with what the token says.
pub async fn whoami(
    State(a): State<Arc<Authority>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(resource) = q.get("resource").filter(|r| a.known_resource(r)) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request",
                "error_description": format!("?resource= must be one of {}", a.resource_list())})),
        )
            .into_response();
    };
    let now = unix_now();
    let url = format!(
        "{}/oauth/whoami?resource={}",
        a.issuer,
        form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>()
    );
    let verified = credentials(&headers).and_then(|(token, proof)| {
        a.verifier.verify(
            Presentation {
                token,
                proof,
                method: "GET",
                url: &url,
            },
            resource,
            now,
        )
    });
    match verified {
        Ok(c) => axum::Json(json!({
            "agent": c.client_id,
            "sub": c.sub,
            "on_behalf_of": c.on_behalf_of(),
            "delegated_by": c.delegated_by(),
            "task": c.task(),
            "aud": c.aud,
            "exp": c.exp,
            "jti": c.jti,
            "depth": c.depth,
            "autonomy": c.autonomy,
            "sponsor": c.sponsor,
            "dpop_bound": c.cnf.is_some(),
        }))
        .into_response(),
        Err(e) => {
            tracing::info!(resource = %resource, "request refused: {e}");
            unauthorized(&a, resource, &e)
        }
    }
}
