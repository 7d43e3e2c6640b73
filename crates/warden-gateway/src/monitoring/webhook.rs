//! Alerts POSTed to a configured URL (MO-1): JSON, signed with HMAC-SHA256 over
//! `"<unix secs>.<body>"` in `Warden-Signature: t=<secs>,v1=<hex>` (the receiver recomputes
//! it and rejects stale times), retried with back-off until a 2xx answer.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, Uri};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use warden_config::{Secret, WebhookConfig};

use crate::mcp::http::{HttpClient, client};

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    let hashed;
    let key = if key.len() > 64 {
        hashed = Sha256::digest(key);
        hashed.as_slice()
    } else {
        key
    };
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let pad = |x: u8| block.map(|b| b ^ x);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The `Warden-Signature` header value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut msg = t.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    format!("t={t},v1={}", hex::encode(hmac_sha256(secret, &msg)))
}

#[derive(Debug)]
pub struct Webhook {
    url: Uri,
    secret: Secret,
    retries: u32,
    timeout: Duration,
    client: HttpClient,
}

impl Webhook {
    pub fn new(c: &WebhookConfig) -> anyhow::Result<Self> {
        let url: Uri = c
            .url
            .parse()
            .map_err(|e| anyhow::anyhow!("monitor.webhook.url {}: {e}", c.url))?;
        let secret = c
            .secret
            .resolve()
            .map_err(|e| anyhow::anyhow!("monitor.webhook.secret: {e}"))?;
        Ok(Self {
            client: client(&url, None)?,
            url,
            secret,
            retries: c.retries,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    /// Delivers `body` (attempts: 1 + retries, waiting 1 s, 2 s, 4 s ... up to 60 s between
    /// them). `Err` carries the last failure.
    pub async fn deliver(&self, event: &str, delivery: i64, body: Vec<u8>) -> Result<u32, String> {
        let body = Bytes::from(body);
        let mut wait = Duration::from_secs(1);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            match self.attempt(event, delivery, body.clone()).await {
                Ok(()) => return Ok(attempt + 1),
                Err(e) => {
                    tracing::warn!(target: "warden::monitor", url = %self.url, attempt = attempt + 1,
                        "alert webhook not delivered: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn attempt(&self, event: &str, delivery: i64, body: Bytes) -> Result<(), String> {
        let sig = signature(self.secret.expose().as_bytes(), crate::unix_now(), &body);
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")))
            .header("warden-event", event)
            .header("warden-delivery", delivery.to_string())
            .header("warden-signature", sig)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature(b"k", 1_700_000_000, b"{}"),
            format!(
                "t=1700000000,v1={}",
                hex::encode(hmac_sha256(b"k", b"1700000000.{}"))
            )
        );
    }
}
