//! Warden's own token-signing keys: generated at first start, kept as 0600 JWK files in
//! `<data dir>/keys/`, rotated with a new `kid`. Tokens are signed with the current key;
//! the JWKS serves the current and the previous key so tokens signed just before a rotation
//! still verify.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{KeyError, KeyPair};

/// The signing keys in force.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    current: KeyPair,
    previous: Option<KeyPair>,
    /// `kid` and verifying key of current and previous, computed once.
    verifying: Vec<(String, ed25519_dalek::VerifyingKey)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Key files in `dir`, oldest first (names start with the creation time).
fn key_files(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("signing-") && n.ends_with(".jwk"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io(dir))
}

impl ServerKeys {
    /// Loads the keys in `dir`, generating the first one if there is none.
    pub fn load_or_create(dir: &Path, now: i64) -> Result<Self, KeyError> {
        create_dir(dir)?;
        if key_files(dir)?.is_empty() {
            Self::rotate(dir, now)?;
        }
        let files = key_files(dir)?;
        let mut newest = files.iter().rev();
        let current = match newest.next() {
            Some(p) => KeyPair::read_private(p)?,
            None => {
                return Err(KeyError::Io {
                    path: dir.display().to_string(),
                    source: std::io::Error::other("no signing key after creating one"),
                });
            }
        };
        let previous = newest
            .next()
            .map(|p| KeyPair::read_private(p))
            .transpose()?;
        let verifying = std::iter::once(&current)
            .chain(previous.as_ref())
            .map(|k| (k.public_jwk().kid, k.signing_key().verifying_key()))
            .collect();
        Ok(Self {
            current,
            previous,
            verifying,
        })
    }

    /// Writes a new current key to `dir`; the old current key becomes the previous one.
    /// Returns the new key id.
    pub fn rotate(dir: &Path, now: i64) -> Result<String, KeyError> {
        create_dir(dir)?;
        let pair = KeyPair::generate();
        let kid = pair.public_jwk().kid;
        let name = format!("signing-{now:012}-{}.jwk", kid.get(..8).unwrap_or(&kid));
        pair.write_private(&dir.join(name))?;
        Ok(kid)
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &KeyPair {
        &self.current
    }

    /// The key to verify a token with, by its `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&KeyPair> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.public_jwk().kid == kid)
    }

    /// The public key for `kid`, for verifying a token Warden signed.
    pub fn verifying_by_kid(&self, kid: &str) -> Option<&ed25519_dalek::VerifyingKey> {
        self.verifying
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, v)| v)
    }

    /// The JWKS document (`/.well-known/jwks.json`): current key first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(|k| {
                let j = k.public_jwk();
                json!({"kty": j.kty, "crv": j.crv, "x": j.x, "kid": j.kid, "alg": "EdDSA", "use": "sig"})
            })
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_and_rotation_keeps_the_previous_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let first = ServerKeys::load_or_create(&keys, 100).unwrap();
        let kid1 = first.current().public_jwk().kid;
        assert_eq!(first.jwks()["keys"].as_array().unwrap().len(), 1);
        // Loading again finds the same key.
        assert_eq!(
            ServerKeys::load_or_create(&keys, 200)
                .unwrap()
                .current()
                .public_jwk()
                .kid,
            kid1
        );
        let kid2 = ServerKeys::rotate(&keys, 300).unwrap();
        let after = ServerKeys::load_or_create(&keys, 400).unwrap();
        assert_eq!(after.current().public_jwk().kid, kid2);
        assert!(
            after.by_kid(&kid1).is_some(),
            "the previous key still verifies"
        );
        let jwks = after.jwks();
        assert_eq!(jwks["keys"][0]["kid"], kid2.as_str());
        assert_eq!(jwks["keys"][1]["kid"], kid1.as_str());
        assert!(jwks["keys"][0].get("d").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
    }
}
