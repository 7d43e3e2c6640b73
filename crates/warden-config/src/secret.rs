//! Secrets: referenced from config, never written in it, never printed.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Where a secret lives: `{ env = "NAME" }` or `{ file = "path" }` (first line, trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretRef {
    Env { env: String },
    File { file: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSecretRef::deserialize(d)?;
        match (raw.env, raw.file) {
            (Some(env), None) if !env.is_empty() => Ok(Self::Env { env }),
            (None, Some(file)) => Ok(Self::File { file }),
            _ => Err(serde::de::Error::custom(
                "a secret needs exactly one of `env = \"VARIABLE\"` or `file = \"path\"` \
                 (secrets are never written in the config file)",
            )),
        }
    }
}

/// A secret that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or empty")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
}

/// A resolved secret. Its value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret's value, for comparing or sending; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SecretRef {
    /// Reads the secret from where it lives.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            Self::Env { env } => std::env::var(env)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret)
                .ok_or_else(|| SecretError::MissingEnv(env.clone())),
            Self::File { file } => {
                let text = std::fs::read_to_string(file).map_err(|source| SecretError::File {
                    path: file.clone(),
                    source,
                })?;
                let line = text.lines().next().unwrap_or_default().trim().to_owned();
                if line.is_empty() {
                    return Err(SecretError::EmptyFile(file.clone()));
                }
                Ok(Secret(line))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
