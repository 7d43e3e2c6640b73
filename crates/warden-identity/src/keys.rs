//! Ed25519 key pairs as JWKs (RFC 8037), thumbprints (RFC 7638), private key files.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_core::PublicJwk;

/// A key that cannot be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a private key")]
    Exists { path: String },
    #[error("{path}: not an Ed25519 private JWK: {reason}")]
    Malformed { path: String, reason: String },
    #[error("not an Ed25519 public JWK: {0}")]
    BadPublic(String),
}

/// An Ed25519 private key as a JWK, the form written to an agent's key file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    /// The private key, base64url. Never logged: `Debug` redacts it.
    pub d: String,
    pub kid: String,
}

impl std::fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateJwk")
            .field("kid", &self.kid)
            .field("d", &"***")
            .finish()
    }
}

/// An Ed25519 key pair.
#[derive(Debug, Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

/// The RFC 7638 thumbprint of an OKP key: SHA-256 over `{"crv","kty","x"}` in that order,
/// base64url.
pub fn thumbprint(crv: &str, x: &str) -> String {
    let canonical = format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The public half as a JWK; `kid` is its thumbprint.
    pub fn public_jwk(&self) -> PublicJwk {
        let x = B64.encode(self.signing.verifying_key().as_bytes());
        PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: thumbprint("Ed25519", &x),
            x,
        }
    }

    /// The whole key as a private JWK.
    pub fn private_jwk(&self) -> PrivateJwk {
        let public = self.public_jwk();
        PrivateJwk {
            kty: public.kty,
            crv: public.crv,
            x: public.x,
            d: B64.encode(self.signing.to_bytes()),
            kid: public.kid,
        }
    }

    /// The signing key, for signing assertions and DPoP proofs.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Writes the private JWK to `path`, created owner-read/write only (0600) and never
    /// over an existing file.
    pub fn write_private(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        let display = path.display().to_string();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: display.clone(),
                }
            } else {
                KeyError::Io {
                    path: display.clone(),
                    source,
                }
            }
        })?;
        let text =
            serde_json::to_string_pretty(&self.private_jwk()).map_err(|e| KeyError::Malformed {
                path: display.clone(),
                reason: e.to_string(),
            })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: display,
                source,
            })
    }

    /// Reads a private JWK file written by [`write_private`](Self::write_private).
    pub fn read_private(path: &Path) -> Result<Self, KeyError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: display.clone(),
            source,
        })?;
        let bad = |reason: String| KeyError::Malformed {
            path: display.clone(),
            reason,
        };
        let jwk: PrivateJwk = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(bad(format!("kty {} / crv {}", jwk.kty, jwk.crv)));
        }
        let d = B64.decode(&jwk.d).map_err(|e| bad(e.to_string()))?;
        let bytes: [u8; 32] = d.try_into().map_err(|_| bad("d is not 32 bytes".into()))?;
        let pair = Self {
            signing: SigningKey::from_bytes(&bytes),
        };
        if pair.public_jwk().x != jwk.x {
            return Err(bad("x does not match d".into()));
        }
        Ok(pair)
    }
}

/// Parses a public JWK into a verifying key, checking its thumbprint id.
pub fn verifying_key(jwk: &PublicJwk) -> Result<VerifyingKey, KeyError> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(KeyError::BadPublic(format!(
            "kty {} / crv {}",
            jwk.kty, jwk.crv
        )));
    }
    let x = B64
        .decode(&jwk.x)
        .map_err(|e| KeyError::BadPublic(e.to_string()))?;
    let bytes: [u8; 32] = x
        .try_into()
        .map_err(|_| KeyError::BadPublic("x is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::BadPublic(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, Verifier};

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // RFC 8037, A.3: the thumbprint of the example Ed25519 key.
        assert_eq!(
            thumbprint("Ed25519", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn private_key_file_is_0600_never_overwritten_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        let pair = KeyPair::generate();
        pair.write_private(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            pair.write_private(&path),
            Err(KeyError::Exists { .. })
        ));
        let back = KeyPair::read_private(&path).unwrap();
        assert_eq!(back.public_jwk(), pair.public_jwk());
        let sig = back.signing_key().sign(b"hello");
        let vk = verifying_key(&pair.public_jwk()).unwrap();
        assert!(vk.verify(b"hello", &sig).is_ok());
        assert!(!format!("{:?}", pair.private_jwk()).contains(&pair.private_jwk().d));
    }
}
