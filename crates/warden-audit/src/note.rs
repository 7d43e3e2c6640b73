//! Signed checkpoints in the C2SP formats: a `tlog-checkpoint` body (origin, tree size,
//! base64 root) inside a `signed-note` with one Ed25519 signature line.
//!
//! ```text
//! warden.example/audit/3f2a…
//! 1024
//! 1WJ6YV…Yw=
//!
//! — warden.example/audit/3f2a… Az3gr5…
//! ```
//!
//! The key id is the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key); the
//! signature covers the body, final newline included. The verifier key is written as
//! `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The C2SP signature algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// A signature line starts with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// A checkpoint's content: which log, how many records, and the Merkle root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a signed checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a signed note: {0}")]
    Malformed(String),
    #[error("no signature by key `{0}` on the note")]
    NoSignature(String),
    #[error("the signature by `{0}` does not verify")]
    BadSignature(String),
    #[error("not a checkpoint: {0}")]
    BadCheckpoint(String),
}

/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[..4]`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, ..] = d;
    [a, b, c, e]
}

/// The verifier key string: `<name>+<hex id>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut raw = vec![ALG_ED25519];
    raw.extend_from_slice(key.as_bytes());
    let id = key_id(name, key);
    format!(
        "{name}+{:02x}{:02x}{:02x}{:02x}+{}",
        id[0],
        id[1],
        id[2],
        id[3],
        STANDARD.encode(raw)
    )
}

/// Parses a verifier key string back into its name and key, checking its key id.
pub fn parse_verifier_key(s: &str) -> Result<(String, VerifyingKey), NoteError> {
    let bad = |m: &str| NoteError::Malformed(format!("verifier key: {m}"));
    // The name never holds a `+`; the base64 key may.
    let mut parts = s.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <name>+<id>+<key>"));
    };
    let raw = STANDARD.decode(key).map_err(|_| bad("key is not base64"))?;
    let Some((&ALG_ED25519, rest)) = raw.split_first() else {
        return Err(bad("not an Ed25519 key"));
    };
    let Ok(bytes) = <[u8; 32]>::try_from(rest) else {
        return Err(bad("not an Ed25519 key"));
    };
    let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 point"))?;
    let want = key_id(name, &vk);
    let hex = want.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if hex != id {
        return Err(bad("key id does not match name and key"));
    }
    Ok((name.to_owned(), vk))
}

/// Signs `text` (which must end in a newline) as a note by `key` under `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    let sig = key.sign(text.as_bytes());
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// Verifies the signature by `name`/`key` on a signed note and returns its text; other
/// signatures (witnesses' cosignatures) are skipped.
pub fn open_note(note: &str, name: &str, key: &VerifyingKey) -> Result<String, NoteError> {
    let Some((text, sigs)) = note.rsplit_once("\n\n") else {
        return Err(NoteError::Malformed(
            "no blank line before the signatures".into(),
        ));
    };
    let text = format!("{text}\n");
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("does not end in a newline".into()));
    }
    let want_id = key_id(name, key);
    let mut found = false;
    for line in sigs.lines() {
        let Some((who, b64)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|r| r.split_once(' '))
        else {
            return Err(NoteError::Malformed(format!(
                "not a signature line: {line:?}"
            )));
        };
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64".into()))?;
        let Some((id, sig)) = blob.split_first_chunk::<4>() else {
            continue;
        };
        if who != name || *id != want_id {
            continue;
        }
        let sig = ed25519_dalek::Signature::from_slice(sig)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        key.verify_strict(text.as_bytes(), &sig)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        found = true;
    }
    if found {
        Ok(text)
    } else {
        Err(NoteError::NoSignature(name.to_owned()))
    }
}

impl Checkpoint {
    /// The note body: origin, size, base64 root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The signed note, signed by `key` under `name`.
    pub fn sign(&self, name: &str, key: &SigningKey) -> String {
        sign_note(&self.body(), name, key)
    }

    /// Parses a signed note and verifies its signature by `name`/`key`.
    pub fn open(note: &str, name: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        Self::parse_body(&open_note(note, name, key)?)
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.lines();
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_owned());
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin"))?;
        let size = lines
            .next()
            .filter(|s| s == &"0" || !s.starts_with('0'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the tree size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or_else(|| bad("the root is not a base64 SHA-256 hash"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "example.com/audit".into(),
            size: 12,
            root: crate::merkle::leaf_hash(b"x"),
        }
    }

    #[test]
    fn signs_and_opens() {
        let k = key(1);
        let note = cp().sign("example.com/audit", &k);
        assert!(note.starts_with("example.com/audit\n12\n"));
        assert!(note.contains("\n\n\u{2014} example.com/audit "));
        let back = Checkpoint::open(&note, "example.com/audit", &k.verifying_key()).unwrap();
        assert_eq!(back, cp());
        let vkey = verifier_key("example.com/audit", &k.verifying_key());
        let (name, vk) = parse_verifier_key(&vkey).unwrap();
        assert_eq!(
            (name.as_str(), vk),
            ("example.com/audit", k.verifying_key())
        );
    }

    #[test]
    fn refuses_changed_notes_and_other_keys() {
        let k = key(1);
        let note = cp().sign("example.com/audit", &k);
        let changed = note.replacen("\n12\n", "\n13\n", 1);
        assert_eq!(
            Checkpoint::open(&changed, "example.com/audit", &k.verifying_key()),
            Err(NoteError::BadSignature("example.com/audit".into()))
        );
        assert_eq!(
            Checkpoint::open(&note, "example.com/audit", &key(2).verifying_key()),
            Err(NoteError::NoSignature("example.com/audit".into()))
        );
        assert!(Checkpoint::open("garbage", "example.com/audit", &k.verifying_key()).is_err());
    }

    /// The C2SP signed-note example key: name `PeterNeumann`, key id `c74f20a3` — computed
    /// here from the public key in the spec's verifier key string.
    /// The reference example of Go's `sumdb/note` (the C2SP signed-note origin): this key
    /// signs this text to exactly this note, and the note opens.
    #[test]
    fn signs_the_reference_example_byte_for_byte() {
        let raw = STANDARD
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let key = SigningKey::from_bytes(&raw[1..].try_into().unwrap());
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let want = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        assert_eq!(sign_note(text, "PeterNeumann", &key), want);
        assert_eq!(
            open_note(&want, "PeterNeumann", &key.verifying_key()).unwrap(),
            text
        );
    }

    #[test]
    fn key_id_matches_the_c2sp_example() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let (name, vk) = parse_verifier_key(vkey).unwrap();
        assert_eq!(name, "PeterNeumann");
        assert_eq!(verifier_key(&name, &vk), vkey);
    }
}
