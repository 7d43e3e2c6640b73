//! Warden's configuration (OP-2): TOML parsed once into validated types.
//!
//! Unknown fields are rejected. Every check runs while deserializing, so every error —
//! syntax, type, unknown key, bad value — carries the file, line and column it is about.
//! Secrets are never written in the file: a [`SecretRef`] names an environment variable or
//! a file, and a resolved [`Secret`] never prints its value (`Debug` and `Display` redact).
//! Relative paths are resolved against the config file's directory.

mod approvals;
mod audit;
mod breakers;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fuzz;
mod inspection;
mod limits;
mod monitor;
mod secret;
mod upstreams;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use approvals::ApprovalsConfig;
pub use audit::{AuditConfig, AuditDurability, DurabilityMode};
pub use breakers::BreakersConfig;
pub use inspection::{
    ClassifierConfig, ContentActions, DlpAction, InjectionAction, InspectionConfig, InspectionRule,
    OutputSchemaAction, Oversize, PartialActions, PinMode, PinningConfig,
};
pub use limits::{LimitConfig, LimitKind, LimitScope};
pub use monitor::{MonitorConfig, WebhookConfig};
pub use secret::{Secret, SecretError, SecretRef};
pub use upstreams::{CredentialConfig, Transport, UpstreamConfig};

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
    pub oauth: OauthConfig,
    /// The tool servers Warden fronts, by name (`[upstreams.crm]`). Each is an OAuth
    /// protected resource at `<issuer>/mcp/<name>`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Listeners bound to one agent, for local MCP clients that cannot attach tokens
    /// (`[[local_listeners]]`). Loopback or a unix socket only.
    #[serde(default)]
    pub local_listeners: Vec<LocalListenerConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Rate limits and blast-radius caps (`[[limits]]`, docs/limits.md).
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// Circuit breakers and automatic demotion (`[breakers]`, docs/breakers.md).
    #[serde(default)]
    pub breakers: BreakersConfig,
    /// Content inspection and tool pinning (`[inspection]`, docs/INSPECTION.md).
    #[serde(default)]
    pub inspection: InspectionConfig,
    /// Behavioural baselines, anomaly detection and quarantine (`[monitor]`,
    /// docs/MONITORING.md).
    #[serde(default)]
    pub monitor: MonitorConfig,
}

/// `[[local_listeners]]`: an MCP endpoint (`/mcp`, `/mcp/<upstream>`) without tokens, where
/// every request acts as one configured agent. Whoever can reach it acts as that agent, so
/// it binds only to loopback or a unix socket (mode 0600); every decision made through it
/// is marked `via = "local:<agent>"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalListenerConfig {
    /// The registered agent every request acts as (it must exist and be active).
    pub agent: String,
    /// A loopback address, e.g. `127.0.0.1:8490`. Exactly one of `listen` and `unix`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A unix socket path. Exactly one of `listen` and `unix`.
    #[serde(default)]
    pub unix: Option<PathBuf>,
    /// The task id recorded with each decision.
    #[serde(default = "default_local_task")]
    pub task: String,
    /// What the task is for.
    #[serde(default)]
    pub purpose: String,
    /// The tools the task may call (`upstream/tool`), as a token's granted actions would.
    /// Empty: no task narrowing — the policy alone decides every action.
    #[serde(default)]
    pub tools: Vec<String>,
}

fn default_local_task() -> String {
    "local".into()
}

impl LocalListenerConfig {
    /// What is wrong with this listener, if anything.
    pub fn problem(&self) -> Option<String> {
        match (&self.listen, &self.unix) {
            (Some(_), Some(_)) | (None, None) => {
                Some("set exactly one of `listen` (loopback) and `unix`".into())
            }
            (Some(a), None) if !a.ip().is_loopback() => Some(format!(
                "{a} is not a loopback address: a listener without tokens must not be reachable \
                 from other machines"
            )),
            _ if self.agent.is_empty() => Some("`agent` is required".into()),
            _ => self
                .tools
                .iter()
                .find(|t| {
                    !t.split_once('/')
                        .is_some_and(|(u, n)| !u.is_empty() && !n.is_empty())
                })
                .map(|t| format!("tools: `{t}` is not `upstream/tool`")),
        }
    }
}

/// `[oauth]`: Warden as the OAuth 2.1 authorization server for agents (issue of task tokens,
/// delegation, DPoP).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthConfig {
    /// The issuer URL: `iss` of every token and the base of every endpoint and resource
    /// URL. Default: `http://<server.listen>`. Set it when clients reach Warden through
    /// another name (a proxy, TLS termination).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Token lifetime per autonomy level, in seconds.
    #[serde(default)]
    pub token_lifetime_secs: TokenLifetimes,
    /// Longest accepted client assertion life (`exp - now`), in seconds.
    #[serde(default = "default_assertion_life")]
    #[schemars(range(min = 10, max = 3600))]
    pub assertion_max_lifetime_secs: i64,
    /// Oldest accepted DPoP proof (`now - iat`), in seconds.
    #[serde(default = "default_dpop_age")]
    #[schemars(range(min = 5, max = 600))]
    pub dpop_max_age_secs: i64,
    /// Tolerated clock skew for `iat`/`nbf`, in seconds.
    #[serde(default = "default_skew")]
    #[schemars(range(max = 300))]
    pub clock_skew_secs: i64,
    /// Most delegation hops from a root task token (RFC 8693 exchanges).
    #[serde(default = "default_depth")]
    #[schemars(range(max = 16))]
    pub max_delegation_depth: u32,
    /// Company identity providers whose user tokens may start an on-behalf-of exchange.
    #[serde(default)]
    pub identity_providers: Vec<IdentityProvider>,
}

fn default_assertion_life() -> i64 {
    300
}
fn default_dpop_age() -> i64 {
    60
}
fn default_skew() -> i64 {
    5
}
fn default_depth() -> u32 {
    3
}

impl Default for OauthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            token_lifetime_secs: TokenLifetimes::default(),
            assertion_max_lifetime_secs: default_assertion_life(),
            dpop_max_age_secs: default_dpop_age(),
            clock_skew_secs: default_skew(),
            max_delegation_depth: default_depth(),
            identity_providers: Vec::new(),
        }
    }
}

/// `[oauth.token_lifetime_secs]`: per autonomy level. Default 300 (5 minutes) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenLifetimes {
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 10, max = 86400))]
    pub intern: i64,
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 10, max = 86400))]
    pub junior: i64,
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 10, max = 86400))]
    pub senior: i64,
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 10, max = 86400))]
    pub principal: i64,
}

fn default_lifetime() -> i64 {
    300
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            intern: 300,
            junior: 300,
            senior: 300,
            principal: 300,
        }
    }
}

/// `[[oauth.identity_providers]]`: a company IdP trusted for user tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// The IdP's `iss`.
    pub issuer: String,
    /// The `aud` its user tokens must carry for Warden.
    pub audience: String,
    /// A JWKS file with the IdP's public keys (Ed25519 `OKP` keys).
    pub jwks_file: PathBuf,
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
    /// Browser origins allowed to call the MCP endpoints (`scheme://host[:port]`), besides
    /// the issuer's own. Requests with any other `Origin` header get HTTP 403 (DNS-rebinding
    /// protection); requests without one (non-browser clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
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
            allowed_origins: Vec::new(),
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
        if let Some(problem) = self.inspection.problem() {
            return Err(err("[inspection", problem));
        }
        for (from, to) in &self.authzen.types {
            if !is_cedar_ident(to) {
                return Err(err(
                    from,
                    format!("authzen.types.{from} = \"{to}\" is not a Cedar identifier"),
                ));
            }
        }
        let o = &self.oauth;
        for (key, v) in [
            ("intern", o.token_lifetime_secs.intern),
            ("junior", o.token_lifetime_secs.junior),
            ("senior", o.token_lifetime_secs.senior),
            ("principal", o.token_lifetime_secs.principal),
        ] {
            if !(10..=86_400).contains(&v) {
                return Err(err(
                    key,
                    format!("oauth.token_lifetime_secs.{key} = {v}: between 10 and 86400"),
                ));
            }
        }
        if !(10..=3600).contains(&o.assertion_max_lifetime_secs) {
            return Err(err(
                "assertion_max_lifetime_secs",
                "oauth.assertion_max_lifetime_secs: between 10 and 3600".into(),
            ));
        }
        if !(5..=600).contains(&o.dpop_max_age_secs) {
            return Err(err(
                "dpop_max_age_secs",
                "oauth.dpop_max_age_secs: between 5 and 600".into(),
            ));
        }
        if !(0..=300).contains(&o.clock_skew_secs) {
            return Err(err(
                "clock_skew_secs",
                "oauth.clock_skew_secs: between 0 and 300".into(),
            ));
        }
        if o.issuer.as_deref().is_some_and(|i| {
            !(i.starts_with("https://") || i.starts_with("http://"))
                || i.ends_with('/')
                || i.contains(['?', '#'])
        }) {
            return Err(err(
                "issuer",
                "oauth.issuer must be an http(s) URL without a trailing slash, query or fragment"
                    .into(),
            ));
        }
        for (name, u) in &self.upstreams {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(
                    name,
                    format!("upstreams.{name}: names are letters, digits, `-` and `_`"),
                ));
            }
            if let Some(problem) = u.problem() {
                return Err(err(name, format!("upstreams.{name}: {problem}")));
            }
        }
        if let Some((key, problem)) = self.breakers.problem() {
            return Err(err(key, problem));
        }
        if let Some((key, problem)) = self.monitor.problem() {
            return Err(err(key, problem));
        }
        let a = &self.audit;
        if !(1..=1_000_000).contains(&a.checkpoint_every_records) {
            return Err(err(
                "checkpoint_every_records",
                "audit.checkpoint_every_records: between 1 and 1000000".into(),
            ));
        }
        if !(1..=3600).contains(&a.checkpoint_every_secs) {
            return Err(err(
                "checkpoint_every_secs",
                "audit.checkpoint_every_secs: between 1 and 3600".into(),
            ));
        }
        if a.origin
            .as_deref()
            .is_some_and(|o| o.is_empty() || o.contains(char::is_whitespace) || o.contains('+'))
        {
            return Err(err(
                "origin",
                "audit.origin: a non-empty name without spaces or `+` (e.g. `warden.example.com/audit`)"
                    .into(),
            ));
        }
        for (i, l) in self.local_listeners.iter().enumerate() {
            if let Some(problem) = l.problem() {
                return Err(err(
                    "local_listeners",
                    format!("local_listeners[{i}] ({}): {problem}", l.agent),
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
        for idp in &mut self.oauth.identity_providers {
            abs(&mut idp.jwks_file);
        }
        if let Some(SecretRef::File { file }) = self.authzen.api_key.as_mut() {
            abs(file);
        }
        if let Some(SecretRef::File { file }) = self.monitor.webhook.as_mut().map(|w| &mut w.secret)
        {
            abs(file);
        }
        for u in self.upstreams.values_mut() {
            if let Some(c) = u.cwd.as_mut() {
                abs(c);
            }
            if let Some(c) = u.ca_file.as_mut() {
                abs(c);
            }
            if let Some(SecretRef::File { file }) = u.credential.as_mut().map(|c| &mut c.secret) {
                abs(file);
            }
        }
    }

    /// Warden's issuer URL: `oauth.issuer`, else `http://<listen address>`.
    pub fn issuer(&self, bound: SocketAddr) -> String {
        self.oauth
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
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
