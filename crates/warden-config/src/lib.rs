//! Warden's configuration (OP-2): TOML parsed once into validated types.
//!
//! Unknown fields are rejected. Every check runs while deserializing, so every error —
//! syntax, type, unknown key, bad value — carries the file, line and column it is about.
//! Secrets are never written in the file: a [`SecretRef`] names an environment variable or
//! a file, and a resolved [`Secret`] never prints its value (`Debug` and `Display` redact).
//! Relative paths are resolved against the config file's directory.

mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use secret::{Secret, SecretError, SecretRef};

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Warden's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub authzen: AuthzenConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8470` (loopback only).
    #[serde(default = "default_listen")]
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Where Warden keeps its state. Default: `$WARDEN_DATA_DIR`, else
    /// `$XDG_DATA_HOME/warden`, else `~/.local/share/warden`. Created if missing.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes; larger bodies get HTTP 413.
    #[serde(default = "default_max_body")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_body_bytes: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8470))
}

fn default_max_body() -> usize {
    1 << 20
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: None,
            max_body_bytes: default_max_body(),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `*.cedar` policies, `*.cedarschema` fragments and `*.entities.json` /
    /// `entities.json` files. None: the embedded default, which denies everything.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Reload the policy set when a file in `dir` changes. An invalid set is rejected and
    /// the running one stays.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Wait this long after the last change before reloading, in milliseconds.
    #[serde(default = "default_debounce")]
    #[schemars(range(max = 10000))]
    pub debounce_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_debounce() -> u64 {
    100
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: None,
            watch: true,
            debounce_ms: default_debounce(),
        }
    }
}

/// `[authzen]`: the AuthZEN Authorization API 1.0 (PDP) endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzenConfig {
    /// Serve `/access/v1/evaluation(s)` and `/.well-known/authzen-configuration`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cedar namespace that AuthZEN types and actions map into, e.g. `Todo`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// AuthZEN `type` → Cedar entity type (unqualified), e.g. `user = "User"`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// A bearer key PEPs must present (`Authorization: Bearer <key>`). Required when
    /// `server.listen` is not a loopback address.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// The PDP's public base URL for the metadata document. Default: from `server.listen`.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for AuthzenConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            namespace: None,
            types: BTreeMap::new(),
            api_key: None,
            public_url: None,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `warden=debug`. `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A config file that cannot be used, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Config {
    /// Parses a config file's text. `file` names it in errors; relative paths in it are
    /// resolved against `base` (the file's directory).
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.check(file, text)?;
        config.resolve(base);
        Ok(config)
    }

    fn check(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| {
            let (line, column) = text.find(key).map_or((0, 0), |o| line_col(text, o));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        if let Some(problem) = self.exposure_problem() {
            return Err(err("listen", problem));
        }
        for (from, to) in &self.authzen.types {
            if !is_cedar_ident(to) {
                return Err(err(
                    from,
                    format!("authzen.types.{from} = \"{to}\" is not a Cedar identifier"),
                ));
            }
        }
        if let Some(ns) = &self.authzen.namespace
            && !ns.split("::").all(is_cedar_ident)
        {
            return Err(err(
                "namespace",
                format!("authzen.namespace \"{ns}\" is not a Cedar namespace"),
            ));
        }
        Ok(())
    }

    /// Why serving this config would expose an unauthenticated API, if it would: the AuthZEN
    /// API on a non-loopback address needs an API key. Checked when the file is parsed and
    /// again when the server binds, after command-line overrides of the address.
    pub fn exposure_problem(&self) -> Option<String> {
        (self.authzen.enabled
            && self.authzen.api_key.is_none()
            && !self.server.listen.ip().is_loopback())
        .then(|| {
            format!(
                "server.listen {} is not a loopback address, so the AuthZEN API needs \
                 authzen.api_key (or set authzen.enabled = false)",
                self.server.listen
            )
        })
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(d) = self.server.data_dir.as_mut() {
            abs(d);
        }
        if let Some(d) = self.policy.dir.as_mut() {
            abs(d);
        }
        if let Some(SecretRef::File { file }) = self.authzen.api_key.as_mut() {
            abs(file);
        }
    }

    /// The JSON schema of the config file (`warden config schema`).
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
    }
}

fn is_cedar_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse("warden.toml", t, Path::new("/etc/warden"))
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(Config::default().server.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn unknown_fields_are_rejected_with_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_values_name_line_and_reason() {
        let e = parse("[server]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[authzen]\napi_key = { env = \"A\", file = \"b\" }\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("exactly one"), "{e}");
    }

    #[test]
    fn public_listen_requires_an_api_key() {
        let e = parse("[server]\nlisten = \"0.0.0.0:8470\"\n").unwrap_err();
        assert!(e.message.contains("api_key"), "{e}");
        assert!(
            parse("[server]\nlisten = \"0.0.0.0:8470\"\n[authzen]\napi_key = { env = \"K\" }\n")
                .is_ok()
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let c = parse("[policy]\ndir = \"policies\"\n").unwrap();
        assert_eq!(c.policy.dir.unwrap(), PathBuf::from("/etc/warden/policies"));
    }

    #[test]
    fn schema_names_every_section() {
        let s = Config::json_schema().to_string();
        for key in ["server", "policy", "authzen", "log", "max_body_bytes"] {
            assert!(s.contains(key), "{key}");
        }
    }
}
