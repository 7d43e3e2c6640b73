//! Reads a policy directory into [`PolicySources`]: the file I/O the engine does not do.

use std::path::{Path, PathBuf};

use warden_policy::{PolicySources, SourceFile};

/// A policy directory that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What kind of policy-set file a path is, by its name.
fn kind(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    if name.ends_with(".cedarschema") {
        Some(Kind::Schema)
    } else if name.ends_with(".cedar") {
        Some(Kind::Policy)
    } else if name == "entities.json" || name.ends_with(".entities.json") {
        Some(Kind::Entities)
    } else {
        None
    }
}

enum Kind {
    Policy,
    Schema,
    Entities,
}

/// Reads every `*.cedar`, `*.cedarschema`, `entities.json` and `*.entities.json` under
/// `dir` (recursively, hidden files skipped), naming each file by its path.
pub fn read_dir(dir: &Path) -> Result<PolicySources, ReadError> {
    let mut sources = PolicySources::default();
    let mut stack = vec![dir.to_path_buf()];
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError { path, source }
    };
    while let Some(d) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(err(&d))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(err(&d))?;
        entries.sort();
        for path in entries {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if path.is_dir() {
                if !hidden {
                    stack.push(path);
                }
                continue;
            }
            let Some(k) = kind(&path) else { continue };
            let text = std::fs::read_to_string(&path).map_err(err(&path))?;
            let file = SourceFile::new(path.display().to_string(), text);
            match k {
                Kind::Policy => sources.policies.push(file),
                Kind::Schema => sources.schemas.push(file),
                Kind::Entities => sources.entities.push(file),
            }
        }
    }
    Ok(sources)
}

/// Reads a single file or a directory: a `.cedar` file alone is a one-file policy set.
pub fn read_path(path: &Path) -> Result<PolicySources, ReadError> {
    if path.is_dir() {
        return read_dir(path);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_path_buf(),
        source,
    })?;
    let file = SourceFile::new(path.display().to_string(), text);
    let mut s = PolicySources::default();
    match kind(path) {
        Some(Kind::Schema) => s.schemas.push(file),
        Some(Kind::Entities) => s.entities.push(file),
        _ => s.policies.push(file),
    }
    Ok(s)
}
