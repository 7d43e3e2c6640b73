//! The text of a policy set, handed to the engine by whoever read it (the engine reads no
//! files).

use sha2::{Digest, Sha256};

/// One file's name (as it should appear in errors) and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Everything a policy set is made of: Cedar policies, schema fragments and entity data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// `*.cedar`: policies.
    pub policies: Vec<SourceFile>,
    /// `*.cedarschema`: schema fragments added to Warden's base schema.
    pub schemas: Vec<SourceFile>,
    /// `*.entities.json` / `entities.json`: entities in Cedar's JSON entity format.
    pub entities: Vec<SourceFile>,
}

impl PolicySources {
    /// The version of this policy set: `sha256:` over every file's kind, name and text, in
    /// name order. Two loads of identical files have the same version.
    pub fn version(&self) -> String {
        let mut files: Vec<(&str, &SourceFile)> = self
            .policies
            .iter()
            .map(|f| ("policy", f))
            .chain(self.schemas.iter().map(|f| ("schema", f)))
            .chain(self.entities.iter().map(|f| ("entities", f)))
            .collect();
        files.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        let mut h = Sha256::new();
        for (kind, f) in files {
            for part in [kind, f.name.as_str(), f.text.as_str()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// True when there is nothing in the set (the embedded default: deny everything).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.schemas.is_empty() && self.entities.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ignores_order_but_not_content() {
        let a = SourceFile::new("a.cedar", "permit(principal, action, resource);");
        let b = SourceFile::new("b.cedar", "");
        let one = PolicySources {
            policies: vec![a.clone(), b.clone()],
            ..Default::default()
        };
        let two = PolicySources {
            policies: vec![b, a.clone()],
            ..Default::default()
        };
        assert_eq!(one.version(), two.version());
        let three = PolicySources {
            policies: vec![a],
            ..Default::default()
        };
        assert_ne!(one.version(), three.version());
        assert!(one.version().starts_with("sha256:"));
    }
}
