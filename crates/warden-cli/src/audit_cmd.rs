//! `warden audit ...`: verify, query, prove and export the tamper-evident audit trail
//! (AU-2, AU-4). Reads `audit.db` in the data directory directly (read-only; safe while the
//! server runs).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::Value;
use warden_audit::query::{self, Entry, Filter};
use warden_audit::verify::{self, open_read_only};

use crate::{ConfigArg, config_cmd};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the Merkle tree from every record, check every checkpoint's signature and
    /// root; name the first record that was changed, removed or moved. Exit 1 if any.
    Verify {
        #[command(flatten)]
        at: At,
        /// Verify the checkpoints with this key (`<name>+<id>+<key>`) instead of the one
        /// in the data directory's key file — use a copy kept elsewhere.
        #[arg(long, value_name = "VERIFIER_KEY")]
        key: Option<String>,
        /// Also check the log against a signed checkpoint kept elsewhere (a file written
        /// by `warden audit checkpoint`): catches a log rewritten with the stolen key.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Records by agent, task, time and decision: a table grouped by agent, or JSON.
    Query {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// An RFC 9162 inclusion proof of one record in the newest checkpoint covering it,
    /// checked here before it is printed.
    Prove {
        #[command(flatten)]
        at: At,
        /// The record's sequence number (the `seq` column of `audit query`).
        #[arg(long, value_name = "N")]
        record: u64,
        #[arg(long)]
        json: bool,
    },
    /// Every matching record, one per line, as stored (`jsonl`) or as OCSF events.
    Export {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Print the newest signed checkpoint (C2SP signed note) and its verifier key; keep
    /// copies elsewhere to check the log against later (`verify --against`).
    Checkpoint {
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The stored leaves, byte for byte (each line hashes to its Merkle leaf).
    Jsonl,
    /// OCSF 1.3: API Activity (6003), Account Change (3001), Application Lifecycle (6002).
    Ocsf,
}

/// Where the log is.
#[derive(Debug, Args)]
pub struct At {
    #[command(flatten)]
    config: ConfigArg,
    /// Data directory (overrides the config and $WARDEN_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl At {
    fn dir(self) -> anyhow::Result<PathBuf> {
        let mut config = config_cmd::load_or_default(self.config.config.as_deref())?;
        if let Some(d) = self.data_dir {
            config.server.data_dir = Some(d);
        }
        Ok(warden_gateway::data_dir(&config))
    }
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this agent's records.
    #[arg(long)]
    agent: Option<String>,
    /// Only this task's records.
    #[arg(long)]
    task: Option<String>,
    /// From this time: RFC 3339 (`2026-11-24T09:00:00Z`), Unix seconds, or an age
    /// (`15m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// `allow`, `deny`, `require_approval` (or an outcome status / event name).
    #[arg(long)]
    decision: Option<String>,
    /// `decision`, `outcome` or `event`.
    #[arg(long)]
    kind: Option<String>,
    /// At most this many records (the oldest matching).
    #[arg(long)]
    limit: Option<u64>,
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<Filter> {
        let now = warden_gateway::audit::now_ms();
        Ok(Filter {
            agent: self.agent,
            task: self.task,
            since_ms: self
                .since
                .as_deref()
                .map(|t| parse_time(t, now))
                .transpose()
                .context("--since")?,
            until_ms: self
                .until
                .as_deref()
                .map(|t| parse_time(t, now))
                .transpose()
                .context("--until")?,
            decision: self.decision,
            kind: self.kind,
            after_seq: None,
            limit: self.limit,
        })
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 (UTC `Z` or an offset), Unix seconds, or an age before `now_ms`; in ms.
fn parse_time(t: &str, now_ms: i64) -> anyhow::Result<i64> {
    let t = t.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs * 1000);
    }
    if let Some(unit) = t.chars().last().filter(char::is_ascii_alphabetic)
        && let Ok(n) = t.trim_end_matches(unit).parse::<i64>()
    {
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => anyhow::bail!("`{t}`: an age is a number with s, m, h or d"),
        };
        return Ok(now_ms - n * secs * 1000);
    }
    let bad = || {
        anyhow::anyhow!(
            "`{t}` is not a time: use RFC 3339 (2026-11-24T09:00:00Z), Unix seconds or an age (2h)"
        )
    };
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        t.get(r).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    if t.len() < 20
        || t.get(4..5) != Some("-")
        || t.get(10..11).is_none_or(|c| c != "T" && c != " ")
    {
        return Err(bad());
    }
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let mut secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let mut rest = t.get(19..).ok_or_else(bad)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        ms = format!("{digits:0<3}")
            .get(..3)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        rest = frac.get(digits.len()..).unwrap_or("");
    }
    match rest {
        "Z" | "z" => {}
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            let h: i64 = off.get(1..3).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let m: i64 = off.get(4..6).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let o = (h * 3600 + m * 60) * if off.starts_with('+') { 1 } else { -1 };
            secs -= o;
        }
        _ => return Err(bad()),
    }
    Ok(secs * 1000 + ms)
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            at,
            key,
            against,
            json,
        } => verify_cmd(&at.dir()?, key, against.as_deref(), json),
        AuditCommand::Query { at, filter, json } => {
            let dir = at.dir()?;
            let db = open_read_only(&dir)?;
            let mut entries = query::query(&db, &filter.filter()?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print_table(&mut entries);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove { at, record, json } => prove(&at.dir()?, record, json),
        AuditCommand::Export { at, filter, format } => export(&at.dir()?, filter.filter()?, format),
        AuditCommand::Checkpoint { at } => {
            let dir = at.dir()?;
            let db = open_read_only(&dir)?;
            let Some(cp) = query::latest_checkpoint(&db)? else {
                anyhow::bail!("no checkpoint yet in {}: the log is empty", dir.display());
            };
            print!("{}", cp.note);
            eprintln!("verifier key: {}", warden_audit::log::verifier_key(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_cmd(
    dir: &Path,
    key: Option<String>,
    against: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let vkey = match key {
        Some(k) => k,
        None => warden_audit::log::verifier_key(dir)
            .with_context(|| format!("no checkpoint key in {}; pass --key", dir.display()))?,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let report = verify::verify(dir, &vkey, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let mut problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    if let Some(file) = against {
        let note = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if let Err(e) = verify::verify_against(dir, &vkey, &note)? {
            problems.push(format!("against {}: {e}", file.display()));
        }
    }
    let ok = problems.is_empty();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": ok,
                "records": report.records,
                "checkpoints": report.checkpoints,
                "checkpointed": report.checkpointed,
                "root": base64::engine::general_purpose::STANDARD.encode(report.root),
                "problems": problems,
            }))?
        );
    } else if ok {
        println!(
            "ok: {} records, {} checkpoints verified in {:.2?} ({} records after the newest \
             checkpoint, covered at the next one)",
            report.records,
            report.checkpoints,
            started.elapsed(),
            report.records - report.checkpointed
        );
    } else {
        eprintln!(
            "FAILED: the audit log in {} has been tampered with or damaged",
            dir.display()
        );
        for p in &problems {
            eprintln!("  - {p}");
        }
        eprintln!(
            "({} records, {} checkpoints read; the first problem is where to look)",
            report.records, report.checkpoints
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn str_of<'v>(r: &'v Value, k: &str) -> &'v str {
    r.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A table grouped by agent identity (records without an agent last), oldest first within.
fn print_table(entries: &mut [Entry]) {
    if entries.is_empty() {
        println!("No records match.");
        return;
    }
    entries.sort_by(|a, b| {
        let key = |e: &Entry| {
            (
                str_of(&e.record, "agent").is_empty(),
                str_of(&e.record, "agent").to_owned(),
            )
        };
        key(a).cmp(&key(b)).then(a.seq.cmp(&b.seq))
    });
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "agent",
        "seq",
        "time",
        "kind",
        "action / event",
        "resource",
        "decision",
        "why",
        "stated reason",
    ]);
    for e in entries.iter() {
        let r = &e.record;
        let time = r.get("time_ms").and_then(Value::as_i64).unwrap_or(0);
        let kind = str_of(r, "kind");
        let (what, decision, why) = match kind {
            "decision" => (
                str_of(r, "action").to_owned(),
                str_of(r, "decision").to_owned(),
                {
                    let policies: Vec<&str> = r
                        .get("policies")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if policies.is_empty() {
                        str_of(r, "reason_id").to_owned()
                    } else {
                        format!("{} ({})", str_of(r, "reason_id"), policies.join(", "))
                    }
                },
            ),
            "outcome" => (
                format!(
                    "→ upstream (record {})",
                    r.get("decision_seq").and_then(Value::as_u64).unwrap_or(0)
                ),
                str_of(r, "status").to_owned(),
                r.get("http_status")
                    .map(|s| format!("HTTP {s}"))
                    .unwrap_or_default(),
            ),
            _ => (
                str_of(r, "event").to_owned(),
                String::new(),
                format!("by {} {}", str_of(r, "actor"), str_of(r, "reason"))
                    .trim()
                    .to_owned(),
            ),
        };
        let agent = str_of(r, "agent");
        t.add_row([
            if agent.is_empty() { "—" } else { agent }.to_owned(),
            e.seq.to_string(),
            crate::agent_cmd::rfc3339(time.div_euclid(1000)),
            kind.to_owned(),
            what,
            str_of(r, "resource").to_owned(),
            decision,
            why,
            str_of(r, "stated_reason").to_owned(),
        ]);
    }
    println!("{t}");
}

fn prove(dir: &Path, record: u64, json: bool) -> anyhow::Result<ExitCode> {
    let db = open_read_only(dir)?;
    let p = query::prove_inclusion(&db, record)?;
    // Check the proof before handing it out: leaf → root → the signed checkpoint.
    let vkey = warden_audit::log::verifier_key(dir)?;
    let (name, key) = warden_audit::note::parse_verifier_key(&vkey)?;
    let cp = warden_audit::note::Checkpoint::open(&p.checkpoint, &name, &key)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let proof: Vec<Vec<u8>> = p
        .proof
        .iter()
        .map(|h| b64.decode(h))
        .collect::<Result<_, _>>()?;
    let leaf = b64.decode(&p.leaf_hash)?;
    warden_audit::merkle::verify_inclusion(p.seq, p.tree_size, &leaf, &proof, &cp.root).map_err(
        |e| anyhow::anyhow!("the proof does not verify ({e}): run `warden audit verify`"),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        println!(
            "record {} is included in checkpoint {} (verified)",
            p.seq, p.tree_size
        );
        println!("leaf:      {}", p.leaf);
        println!("leaf hash: {}", p.leaf_hash);
        println!("proof ({} hashes, leaf to root):", p.proof.len());
        for h in &p.proof {
            println!("  {h}");
        }
        println!("checkpoint:\n{}", p.checkpoint);
    }
    Ok(ExitCode::SUCCESS)
}

fn export(dir: &Path, mut filter: Filter, format: Format) -> anyhow::Result<ExitCode> {
    let db = open_read_only(dir)?;
    let limit = filter.limit;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut written = 0u64;
    // Page through the log so an export of millions of records stays small in memory.
    loop {
        filter.limit = Some(limit.map_or(10_000, |l| (l - written).min(10_000)));
        if filter.limit == Some(0) {
            break;
        }
        if format == Format::Jsonl {
            let page = query::leaves(&db, &filter)?;
            let Some(&(last, _)) = page.last() else { break };
            for (_, leaf) in &page {
                writeln!(out, "{leaf}")?;
            }
            written += page.len() as u64;
            filter.after_seq = Some(last);
        } else {
            let page = query::query(&db, &filter)?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in &page {
                writeln!(out, "{}", warden_audit::export::ocsf_line(e))?;
            }
            written += page.len() as u64;
            filter.after_seq = Some(last);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_time_forms() {
        assert_eq!(
            parse_time("2026-11-24T09:00:00Z", 0).unwrap(),
            1_795_510_800_000
        );
        assert_eq!(
            parse_time("2026-11-24T10:00:00.5+01:00", 0).unwrap(),
            1_795_510_800_500
        );
        assert_eq!(parse_time("1795510800", 0).unwrap(), 1_795_510_800_000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("2026-11-24", 0).is_err());
    }
}
