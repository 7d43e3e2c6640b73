//! `warden policy ...`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use warden_core::{ActionKind, AgentId, AutonomyLevel, Effect, RiskScore};
use warden_gateway::policy_files;
use warden_policy::{ActionRequest, Outcome, PolicySnapshot, TaskInfo, full_schema_text, testing};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy set (a directory, or one .cedar file) and validate it against the
    /// schema; report file, line and reason for each problem.
    Validate {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Run policy test files (request → expected decision cases; see docs/policy-tests.md).
    Test {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain why a request is allowed or denied: which policies, which conditions.
    Explain(ExplainArgs),
    /// Print the full Cedar schema a policy set is validated against.
    Schema {
        /// A policy directory whose schema fragments to include.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The policy set (directory or .cedar file).
    #[arg(long, short = 'p', value_name = "PATH")]
    policies: PathBuf,
    /// A request as JSON (the `request` format of policy tests); `-` reads stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["agent", "resource"])]
    request: Option<PathBuf>,
    /// The acting agent's id.
    #[arg(long, required_unless_present = "request")]
    agent: Option<AgentId>,
    #[arg(long, default_value = "call_tool")]
    action: ActionKind,
    /// `server/tool` (or `server/uri`, `server/prompt`, an agent id).
    #[arg(long, required_unless_present = "request")]
    resource: Option<String>,
    /// Tool arguments as a JSON object.
    #[arg(long = "args", default_value = "{}", value_name = "JSON")]
    arguments: String,
    #[arg(long, default_value = "intern")]
    autonomy: AutonomyLevel,
    #[arg(long, default_value_t = 0)]
    risk: i64,
    /// Percent used of the fullest limit matching the call (`context.limit_used`).
    #[arg(long, default_value_t = 0)]
    limit_used: i64,
    /// Task id.
    #[arg(long, default_value = "")]
    task: String,
    /// Decision time, seconds since the Unix epoch (default: now).
    #[arg(long)]
    time: Option<i64>,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

fn load(path: &Path) -> anyhow::Result<PolicySnapshot> {
    let sources = policy_files::read_path(path)?;
    PolicySnapshot::load(&sources).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Validate { path } => validate(&path),
        PolicyCommand::Test { files, json } => test(&files, json),
        PolicyCommand::Explain(args) => explain(args),
        PolicyCommand::Schema { dir } => {
            let schemas = match dir {
                Some(d) => policy_files::read_path(&d)?.schemas,
                None => Vec::new(),
            };
            print!("{}", full_schema_text(&schemas));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let sources = policy_files::read_path(path)?;
    match PolicySnapshot::load(&sources) {
        Ok(s) => {
            for w in s.warnings() {
                println!("warning: {w}");
            }
            let st = s.stats();
            println!(
                "ok: {} — {} policies, {} entities, {} files ({})",
                path.display(),
                st.policies,
                st.entities,
                st.files,
                s.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            eprintln!("{} error(s); the policy set is invalid", errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let mut total = 0;
    let mut json_out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read test file {}", file.display()))?;
        let spec = testing::parse(&file.display().to_string(), &text)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let policies = dir.join(spec.policies.as_deref().unwrap_or("."));
        let snapshot = load(&policies).with_context(|| {
            format!(
                "policy set {} (from {})",
                policies.display(),
                file.display()
            )
        })?;
        let results = testing::run(&snapshot, &spec);
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["", "case", "expected", "got", "determining / failure"]);
        for r in &results {
            total += 1;
            if !r.passed() {
                failed += 1;
            }
            let detail = if r.passed() {
                r.decision
                    .determining
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                r.failures.join("\n")
            };
            table.add_row([
                if r.passed() { "PASS" } else { "FAIL" }.to_owned(),
                r.name.clone(),
                r.expected.to_string(),
                r.decision.effect.to_string(),
                detail,
            ]);
            json_out.push(serde_json::json!({
                "file": file.display().to_string(),
                "case": r.name,
                "passed": r.passed(),
                "expected": r.expected,
                "decision": r.decision,
                "failures": r.failures,
            }));
        }
        if !json {
            println!("{} ({} cases)\n{table}", file.display(), results.len());
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json_out)?);
    } else {
        println!("{} passed, {} failed", total - failed, failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let snapshot = load(&a.policies)?;
    let request: ActionRequest = match &a.request {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
            };
            serde_json::from_str(&text).context("the request is not valid")?
        }
        None => {
            let serde_json::Value::Object(arguments) =
                serde_json::from_str(&a.arguments).context("--args must be a JSON object")?
            else {
                bail!("--args must be a JSON object");
            };
            let (Some(agent), Some(resource)) = (a.agent, a.resource) else {
                bail!("--agent and --resource are required without --request");
            };
            ActionRequest {
                agent,
                action: a.action,
                resource,
                arguments,
                task: TaskInfo {
                    id: a.task,
                    purpose: String::new(),
                },
                on_behalf_of: None,
                delegated_by: Vec::new(),
                autonomy: a.autonomy,
                risk: RiskScore::new(a.risk)?,
                limit_used: a.limit_used,
                time: a.time.unwrap_or_else(warden_gateway::unix_now),
                reason: None,
                inspection: Default::default(),
            }
        }
    };
    let ex = snapshot.explain_conditions(&request);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ex)?);
        return Ok(ExitCode::SUCCESS);
    }
    let decision = &ex.decision;
    println!("decision: {}", decision.effect);
    for r in &decision.reasons {
        println!("  because {r}");
    }
    for e in &decision.errors {
        match &e.policy {
            Some(p) => println!("  error in {p}: {}", e.message),
            None => println!("  error: {}", e.message),
        }
    }
    if let Some(ap) = &decision.approval {
        println!("  approvers: {}", ap.approvers.join(", "));
    }
    if !decision.notify.is_empty() {
        println!("  notify: {}", decision.notify.join(", "));
    }
    println!(
        "\n{} of {} policies could apply to this request (the scope index's slice):",
        ex.trace.candidates.len(),
        snapshot.stats().policies
    );
    for p in &ex.policies {
        let Some(m) = snapshot.policy(p.id.as_str()) else {
            continue;
        };
        let status = if decision.determining.contains(&p.id) {
            "DETERMINING"
        } else if ex.trace.satisfied.contains(&p.id) {
            "satisfied"
        } else if decision
            .errors
            .iter()
            .any(|e| e.policy.as_ref() == Some(&p.id))
        {
            "error"
        } else if !p.scope_matched {
            "scope does not match"
        } else {
            "conditions not met"
        };
        println!(
            "\n  {} {} at {}:{} — {status}",
            warden_policy::effect_name(m.effect),
            m.id,
            m.file,
            m.line
        );
        if let Some(r) = &m.reason {
            println!("    reason: {r}");
        }
        for c in &p.conditions {
            // An `unless` clause holds when its condition is false.
            let (mark, note) = match (&c.outcome, c.clause.as_str()) {
                (Outcome::True, "unless") => (
                    "✗",
                    "true (an `unless` blocks the policy when all its parts are true)".to_owned(),
                ),
                (Outcome::False, "unless") => {
                    ("✓", "false, so this `unless` does not block".to_owned())
                }
                (Outcome::True, _) => ("✓", "true".to_owned()),
                (Outcome::False, _) => ("✗", "false".to_owned()),
                (Outcome::Error(e), _) => ("!", format!("error: {e}")),
            };
            println!("    {mark} {} {{ {} }} — {note}", c.clause, c.text);
        }
    }
    if decision.effect == Effect::Deny
        && decision.determining.is_empty()
        && decision.errors.is_empty()
    {
        println!("\nNo permit policy was satisfied, so the request is denied by default.");
    }
    Ok(ExitCode::SUCCESS)
}
