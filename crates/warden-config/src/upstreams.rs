//! `[upstreams.<name>]`: the tool servers behind Warden — Streamable HTTP (`http://` or
//! `https://`, with an optional `ca_file`) or stdio child processes — and their own
//! credentials (docs/mcp.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretRef;

/// `[upstreams.<name>]`: a tool server behind Warden.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Human-readable name, published as `resource_name` in its RFC 9728 metadata.
    #[serde(default)]
    pub name: Option<String>,
    /// The upstream's MCP Streamable HTTP endpoint (`http://` or `https://`). Exactly one
    /// of `url` and `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// A stdio MCP server to launch as a child process: the program. Exactly one of `url`
    /// and `command`.
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of `command` (added to a cleared environment with `PATH` and `HOME`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of `command`.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The upstream's own credential, injected by Warden on every forwarded call. Agents
    /// never see it; an agent's token is never forwarded.
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
    /// For an `https://` upstream: a PEM file of CA certificates to trust besides the
    /// system's (a private CA, or a self-signed server certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one upstream call may take, in seconds.
    #[serde(default = "default_upstream_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_secs: u64,
}

fn default_upstream_timeout() -> u64 {
    30
}

/// How Warden reaches an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    Http { url: &'a str },
    Stdio { command: &'a str },
}

impl UpstreamConfig {
    /// The transport; `None` only for a config that [`problem`](Self::problem) refuses.
    pub fn transport(&self) -> Option<Transport<'_>> {
        match (&self.url, &self.command) {
            (Some(url), None) => Some(Transport::Http { url }),
            (None, Some(command)) => Some(Transport::Stdio { command }),
            _ => None,
        }
    }

    pub(crate) fn problem(&self) -> Option<String> {
        if !(1..=3600).contains(&self.timeout_secs) {
            return Some(format!(
                "timeout_secs must be 1 to 3600 (is {})",
                self.timeout_secs
            ));
        }
        let transport = match self.transport() {
            Some(t) => t,
            None if self.url.is_none() && self.command.is_none() => {
                return Some("set `url` (Streamable HTTP) or `command` (stdio)".into());
            }
            None => return Some("set `url` or `command`, not both".into()),
        };
        match transport {
            Transport::Http { url } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Some(format!("url \"{url}\" must start with http:// or https://"));
                }
                if self.ca_file.is_some() && !url.starts_with("https://") {
                    return Some("`ca_file` is for an https:// upstream".into());
                }
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    return Some("`args`, `env` and `cwd` belong to a `command` upstream".into());
                }
                if let Some(c) = &self.credential
                    && (c.header.is_none() || c.env.is_some())
                {
                    return Some(
                        "a `url` upstream's credential goes in a header: set credential.header"
                            .into(),
                    );
                }
            }
            Transport::Stdio { command } => {
                if command.is_empty() {
                    return Some("`command` is empty".into());
                }
                if self.ca_file.is_some() {
                    return Some("`ca_file` belongs to a `url` upstream".into());
                }
                if let Some(c) = &self.credential
                    && (c.env.is_none() || c.header.is_some())
                {
                    return Some(
                        "a `command` upstream's credential goes in its environment: set \
                         credential.env"
                            .into(),
                    );
                }
            }
        }
        if let Some(h) = self.credential.as_ref().and_then(|c| c.header.as_deref())
            && (h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Some(format!(
                "credential.header \"{h}\" is not an HTTP header name"
            ));
        }
        None
    }
}

/// `[upstreams.<name>.credential]`: where the upstream's secret comes from and where it goes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// HTTP header to set on requests to a `url` upstream, e.g. `Authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// Environment variable to set for a `command` upstream, e.g. `GITHUB_TOKEN`.
    #[serde(default)]
    pub env: Option<String>,
    /// Text put before the secret, e.g. `"Bearer "`.
    #[serde(default)]
    pub prefix: String,
    /// The secret: `{ env = "VAR" }` or `{ file = "path" }` (first line; relative to the
    /// config file).
    pub secret: SecretRef,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigError};

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse("warden.toml", t, Path::new("/etc/warden"))
    }

    #[test]
    fn a_ca_file_belongs_to_an_https_upstream_and_resolves_like_other_paths() {
        let c = parse("[upstreams.b]\nurl = \"https://b.internal/mcp\"\nca_file = \"ca.pem\"\n")
            .unwrap();
        assert_eq!(
            c.upstreams["b"].ca_file.as_deref(),
            Some(Path::new("/etc/warden/ca.pem"))
        );
        let e = parse("[upstreams.b]\nurl = \"http://b.internal/mcp\"\nca_file = \"ca.pem\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = parse("[upstreams.b]\ncommand = \"srv\"\nca_file = \"ca.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("ca_file"), "{e}");
    }
}
