//! Data-leak prevention rules: secrets and credentials, and personal data.
//!
//! Each rule is run only when its trigger fired — a keyword from the shared Aho-Corasick pass
//! (`AKIA`, `ghp_`, `-----BEGIN`, `password` …) or, for numbers, a run of enough digits — and
//! each match must then pass the rule's check: a checksum (Luhn for cards, mod-97 for IBANs,
//! the DNI letter), the structure rules of the identifier (SSN areas), or enough entropy for a
//! credential next to a keyword. That keeps the false positives of "a 16-digit number" or
//! "password: changeme" out.

use crate::DataClass;

/// When a DLP rule runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// When one of these words occurs (ASCII case-insensitive).
    Cues(&'static [&'static str]),
    /// Inside a window around a run of at least this many digits.
    Digits(usize),
}

/// One DLP rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: &'static str,
    pub class: DataClass,
    pub trigger: Trigger,
    /// Case-sensitive unless it says `(?i)`; ASCII classes.
    pub pattern: &'static str,
    /// The capture group that is the sensitive value: 0 is the whole match; otherwise the
    /// first group from this one on that took part (for alternatives with a group each).
    pub group: usize,
    /// The match is reported only if this accepts the value.
    pub check: fn(&[u8]) -> bool,
    /// Characters of the value left readable at the start and the end when masked.
    pub keep: (usize, usize),
    /// How far a match can start before its cue and end after it (bytes).
    pub reach: (usize, usize),
}

/// Keyword, separator and a long token on either side.
const REACH: (usize, usize) = (64, 320);

fn any(_: &[u8]) -> bool {
    true
}

/// The rule ids and what they find.
pub fn rules() -> impl Iterator<Item = (&'static str, DataClass)> {
    RULES.iter().map(|r| (r.id, r.class))
}

/// The rules.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        id: "aws_access_key_id",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA"]),
        pattern: r"\b(AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z2-7]{16}\b",
        group: 0,
        check: not_example,
        keep: (4, 0),
        reach: REACH,
    },
    Rule {
        id: "aws_secret_access_key",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["aws", "secret_access", "secretaccess"]),
        pattern: r#"(?i)(?:aws.{0,20}secret.{0,20}|secret_?access_?key)["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})\b"#,
        group: 1,
        check: high_entropy_40,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "github_token",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        pattern: r"\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        group: 0,
        check: not_example,
        keep: (4, 0),
        reach: REACH,
    },
    Rule {
        id: "gitlab_token",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["glpat-"]),
        pattern: r"\bglpat-[A-Za-z0-9_-]{20,}",
        group: 0,
        check: not_example,
        keep: (6, 0),
        reach: REACH,
    },
    Rule {
        id: "slack_token",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["xox"]),
        pattern: r"\bxox[abposr]-[0-9]{6,}-[A-Za-z0-9-]{10,}",
        group: 0,
        check: not_example,
        keep: (5, 0),
        reach: REACH,
    },
    Rule {
        id: "stripe_key",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["sk_live_", "rk_live_", "sk_test_", "rk_test_"]),
        pattern: r"\b[rs]k_(live|test)_[A-Za-z0-9]{16,}",
        group: 0,
        check: not_example,
        keep: (8, 0),
        reach: REACH,
    },
    Rule {
        id: "google_api_key",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["AIza"]),
        pattern: r"\bAIza[0-9A-Za-z_-]{35}\b",
        group: 0,
        check: not_example,
        keep: (4, 0),
        reach: REACH,
    },
    Rule {
        id: "llm_api_key",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["sk-"]),
        pattern: r"\bsk-(ant-(api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}|(proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,})",
        group: 0,
        check: high_entropy_token,
        keep: (3, 0),
        reach: REACH,
    },
    Rule {
        id: "private_key",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["PRIVATE KEY"]),
        pattern: r"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----[\s\S]{16,}?(-----END [A-Z ]{0,20}PRIVATE KEY( BLOCK)?-----|\z)",
        group: 0,
        check: any,
        keep: (0, 0),
        reach: (48, 16 * 1024),
    },
    Rule {
        id: "jwt",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["eyJ"]),
        pattern: r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
        group: 0,
        check: any,
        keep: (3, 0),
        reach: (0, 8 * 1024),
    },
    Rule {
        id: "connection_string",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["://"]),
        pattern: r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver|ldaps?|ftp|sftp|smtp)://[^\s:/@]{1,64}:([^\s@/]{3,128})@[^\s/]+",
        group: 1,
        check: not_placeholder,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "bearer_token",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&["bearer", "dpop "]),
        pattern: r"(?i)\b(?:bearer|dpop)\s+([A-Za-z0-9._~+/-]{20,}=*)",
        group: 1,
        check: high_entropy_token,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "credential_assignment",
        class: DataClass::Secret,
        trigger: Trigger::Cues(&[
            "password",
            "passwd",
            "pwd",
            "secret",
            "api_key",
            "apikey",
            "api-key",
            "token",
            "credential",
        ]),
        pattern: r#"(?i)(?:\b|_)(?:password|passwd|pwd|secret|client_secret|api_?key|api-key|access_?token|auth_?token|refresh_?token|credentials?)\b["']?\s*[:=]\s*["']?([^\s"',;<>]{8,128})"#,
        group: 1,
        check: credential_value,
        keep: (0, 0),
        reach: REACH,
    },
    // ---- personal data ------------------------------------------------------------------
    Rule {
        id: "credit_card",
        class: DataClass::Pii,
        trigger: Trigger::Digits(13),
        pattern: r"\b(?:\d[ -]?){12,18}\d\b",
        group: 0,
        check: card_number,
        keep: (0, 4),
        reach: REACH,
    },
    Rule {
        id: "iban",
        class: DataClass::Pii,
        trigger: Trigger::Digits(8),
        pattern: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        group: 0,
        check: iban,
        keep: (4, 0),
        reach: REACH,
    },
    Rule {
        id: "us_ssn",
        class: DataClass::Pii,
        trigger: Trigger::Digits(9),
        pattern: r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
        group: 0,
        check: ssn,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "es_dni",
        class: DataClass::Pii,
        trigger: Trigger::Digits(8),
        pattern: r"\b[0-9]{8}-?[A-HJ-NP-TV-Z]\b",
        group: 0,
        check: dni,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "uk_nino",
        class: DataClass::Pii,
        trigger: Trigger::Digits(6),
        pattern: r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
        group: 0,
        check: nino,
        keep: (0, 0),
        reach: REACH,
    },
    Rule {
        id: "email_address",
        class: DataClass::Pii,
        trigger: Trigger::Cues(&["@"]),
        pattern: r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b",
        group: 0,
        check: any,
        keep: (1, 0),
        reach: REACH,
    },
    Rule {
        id: "phone_number",
        class: DataClass::Pii,
        trigger: Trigger::Digits(8),
        pattern: r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax)\b)[.:#\s]{1,4}(\(?[0-9]{2,4}\)?(?:[ .-]?[0-9]{2,4}){2,4})\b|(\+[1-9][0-9]{0,2}[ .-]?(?:\(0?[0-9]{1,4}\)|[0-9]{1,4})(?:[ .-]?[0-9]{2,4}){2,4})\b",
        group: 1,
        check: phone,
        keep: (0, 2),
        reach: REACH,
    },
];

// ---- checks ----------------------------------------------------------------------------------

/// Shannon entropy in bits per character.
pub(crate) fn entropy(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        if let Some(c) = counts.get_mut(b as usize) {
            *c += 1;
        }
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Documentation examples (AWS's `AKIAIOSFODNN7EXAMPLE`, `xxxx`, runs of one character).
fn not_example(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    !(has(b"example")
        || has(b"xxxxxxxx")
        || has(b"00000000")
        || has(b"12345678")
        || entropy(v) < 2.5)
}

fn high_entropy_40(v: &[u8]) -> bool {
    not_example(v) && entropy(v) >= 4.0
}

fn high_entropy_token(v: &[u8]) -> bool {
    not_example(v) && entropy(v) >= 3.5 && v.iter().any(u8::is_ascii_digit)
}

/// Placeholders people write where a secret would go.
fn not_placeholder(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    let placeholders: [&[u8]; 12] = [
        b"password",
        b"passwd",
        b"changeme",
        b"secret",
        b"example",
        b"redacted",
        b"your",
        b"xxx",
        b"***",
        b"${",
        b"{{",
        b"<",
    ];
    !placeholders
        .iter()
        .any(|p| lower.windows(p.len()).any(|w| w == *p))
        && entropy(v) >= 1.5
}

/// A credential next to its keyword: not a placeholder, not a word, not a variable reference.
fn credential_value(v: &[u8]) -> bool {
    if !not_placeholder(v) || v.first().is_some_and(|&b| b == b'$' || b == b'%') {
        return false;
    }
    let digits = v.iter().filter(|b| b.is_ascii_digit()).count();
    let symbols = v.iter().filter(|b| !b.is_ascii_alphanumeric()).count();
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    // Mixed classes and some disorder: "hunter2!x9" yes, "required" or "true" no.
    let classes = usize::from(digits > 0)
        + usize::from(symbols > 0)
        + usize::from(upper)
        + usize::from(lower);
    classes >= 2 && entropy(v) >= 2.8
}

fn digits_of(v: &[u8]) -> impl Iterator<Item = u32> + '_ {
    v.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| u32::from(b - b'0'))
}

/// Luhn check digit.
pub(crate) fn luhn(v: &[u8]) -> bool {
    let digits: Vec<u32> = digits_of(v).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// A payment card number: 13–19 digits, a known issuer prefix, the Luhn check.
fn card_number(v: &[u8]) -> bool {
    let digits: String = v
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    let n = digits.len();
    let prefix = |len: usize| {
        digits
            .get(..len)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let issuer = match digits.as_bytes().first() {
        Some(b'4') => matches!(n, 13 | 16 | 19),
        Some(b'5') => n == 16 && (51..=55).contains(&prefix(2)),
        Some(b'2') => n == 16 && (2221..=2720).contains(&prefix(4)),
        Some(b'3') => {
            (n == 15 && matches!(prefix(2), 34 | 37))
                || (n == 16 && (3528..=3589).contains(&prefix(4)))
                || (n == 14 && matches!(prefix(2), 36 | 38 | 30))
        }
        Some(b'6') => {
            (16..=19).contains(&n)
                && (prefix(4) == 6011
                    || prefix(2) == 65
                    || (644..=649).contains(&prefix(3))
                    || prefix(2) == 62)
        }
        _ => false,
    };
    // All one digit ("4444 4444 4444 4448" aside) is a test pattern, not a card.
    let distinct = digits
        .bytes()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    issuer && distinct > 2 && luhn(digits.as_bytes())
}

/// IBAN: the country's length and the mod-97 check.
pub(crate) fn iban(v: &[u8]) -> bool {
    let compact: Vec<u8> = v.iter().copied().filter(|b| *b != b' ').collect();
    let Some(country) = compact.get(..2) else {
        return false;
    };
    let expected = match country {
        b"DE" => 22,
        b"GB" | b"IE" => 22,
        b"FR" | b"MC" | b"IT" => 27,
        b"ES" | b"SE" => 24,
        b"NL" => 18,
        b"BE" => 16,
        b"CH" | b"LI" => 21,
        b"AT" | b"LU" => 20,
        b"PL" => 28,
        b"PT" => 25,
        b"DK" | b"FI" => 18,
        b"NO" => 15,
        b"CZ" | b"SK" => 24,
        _ => return false,
    };
    if compact.len() != expected {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if value >= 10 {
            (rem * 100 + value) % 97
        } else {
            (rem * 10 + value) % 97
        };
    }
    rem == 1
}

/// US social security number: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn(v: &[u8]) -> bool {
    let d: Vec<u32> = digits_of(v).collect();
    let num =
        |r: std::ops::Range<usize>| d.get(r).map_or(0, |s| s.iter().fold(0, |a, &x| a * 10 + x));
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    d.len() == 9 && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Spanish DNI: the letter is the number mod 23 in a fixed table.
fn dni(v: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let n = digits_of(v).fold(0u32, |a, x| a * 10 + x);
    let letter = v.last().copied();
    LETTERS.get((n % 23) as usize).copied() == letter
}

/// UK National Insurance number: prefixes that are never issued are out.
fn nino(v: &[u8]) -> bool {
    let prefix = v.get(..2).unwrap_or_default();
    !matches!(
        prefix,
        b"BG" | b"GB" | b"NK" | b"KN" | b"TN" | b"NT" | b"ZZ"
    )
}

/// A phone number has 8–15 digits (E.164) and is not a date or a version.
fn phone(v: &[u8]) -> bool {
    let n = digits_of(v).count();
    (8..=15).contains(&n)
}

/// Masks `value`: characters become `*`, except `keep.0` at the start and `keep.1` at the end
/// (never more than a third of the value). Personal data keeps its separators (`4*** ****
/// **** 1111`, `j***@*****.***`), so a reader still sees what kind of value was there;
/// secrets keep only whitespace.
pub(crate) fn mask(value: &str, keep: (usize, usize), class: DataClass) -> String {
    let n = value.chars().count();
    let budget = n / 3;
    let head = keep.0.min(budget);
    let tail = keep.1.min(budget.saturating_sub(head));
    let hidden = |c: char| match class {
        DataClass::Secret => !c.is_whitespace(),
        DataClass::Pii => c.is_alphanumeric(),
    };
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i + tail >= n || !hidden(c) {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
