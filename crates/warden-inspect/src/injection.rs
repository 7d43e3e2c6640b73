//! The rule layer of injection detection: the phrasings that address the model rather than
//! the reader. Each rule names the cue words that must occur for it to be worth running (one
//! Aho-Corasick pass finds them for all rules at once), a pattern over the normalised text,
//! a category and a score. Rules for tool descriptions (IO-4, tool poisoning) only run on
//! descriptions.

use crate::{Category, Kind};

/// One injection or poisoning rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: &'static str,
    pub category: Category,
    pub score: f32,
    /// The rule runs only where one of these words occurs (ASCII case-insensitive).
    pub cues: &'static [&'static str],
    /// Case-insensitive, ASCII classes (`\s`, `\b`, `\w`), over the normalised text.
    pub pattern: &'static str,
    /// Only for tool descriptions.
    pub descriptions_only: bool,
    /// How far a match can start before its cue word and end after it (bytes): the pattern
    /// runs only on that stretch around each cue.
    pub reach: (usize, usize),
}

/// Enough for the longest phrasing of most rules on either side of its cue.
const DEFAULT_REACH: (usize, usize) = (240, 420);

impl Rule {
    const fn with_reach(mut self, back: usize, forward: usize) -> Self {
        self.reach = (back, forward);
        self
    }

    pub(crate) fn applies_to(&self, kind: Kind) -> bool {
        !self.descriptions_only || kind == Kind::ToolDescription
    }
}

const fn rule(
    id: &'static str,
    category: Category,
    score: f32,
    cues: &'static [&'static str],
    pattern: &'static str,
) -> Rule {
    Rule {
        id,
        category,
        score,
        cues,
        pattern,
        descriptions_only: false,
        reach: DEFAULT_REACH,
    }
}

/// A rule for tool descriptions only (IO-4).
const fn description_rule(
    id: &'static str,
    category: Category,
    score: f32,
    cues: &'static [&'static str],
    pattern: &'static str,
) -> Rule {
    let mut r = rule(id, category, score, cues, pattern);
    r.descriptions_only = true;
    r
}

/// The rules, in the order their findings are reported.
pub(crate) const RULES: &[Rule] = &[
    rule(
        "override_instructions",
        Category::InstructionOverride,
        0.95,
        &[
            "ignore",
            "disregard",
            "forget",
            "override",
            "bypass",
            "skip",
            "discard",
            "abandon",
            "aside",
        ],
        concat!(
            r"\b(ignore|disregard|forget|override|bypass|skip|discard|abandon|set\s+aside)\b",
            r"[\s,]+(about\s+)?((all|any|every|each|the|your|my|these|those|this|of|everything|that|what|you|were|was|told|given|have|been|previous(ly)?|prior|above|earlier|preceding|former|original|existing|initial|system|old|current)[\s,]+){0,5}",
            r"(instructions?|prompts?|rules|guidelines|directives?|directions|commands?|guardrails|restrictions|programming|orders|told|said)\b"
        ),
    ),
    rule(
        "new_instructions",
        Category::InstructionOverride,
        0.85,
        &["instruction", "directive", "task", "order"],
        r"\b(new|updated|revised|important|urgent|real|actual|true|additional|hidden|secret|priority|override)\s+(system\s+)?(instructions?|directives?|tasks?|orders)\s*(:|!|\*|follow|below|for\s+(you|the\s+(ai|assistant|model|agent)))",
    ),
    rule(
        "instead_do",
        Category::InstructionOverride,
        0.8,
        &["instead", "rather"],
        r"\b(instead|rather)\b[\s,]*(of\s+(summariz|answer|respond|translat|complet|doing)\w*[^.\n]{0,60}?[,.]?\s*)?(you\s+(must|should|will)|please|do|just)\s+\w+",
    ),
    rule(
        "addressed_to_model",
        Category::InstructionOverride,
        0.8,
        &[
            "ai",
            "llm",
            "assistant",
            "model",
            "chatbot",
            "agent",
            "gpt",
            "claude",
            "copilot",
            "bot",
            "gemini",
            "automated",
        ],
        concat!(
            r"(\b(attention|note|message|instructions?|memo|reminder|important)\s+(to|for)\s+(the\s+|any\s+|all\s+)?(ai|llms?|assistants?|language\s+models?|chatbots?|agents?|gpt|claude|copilot|model|bots?)\b",
            r"|\b(dear|hey|hello|hi)\s+(ai|assistant|llm|chatbot|agent|gpt|claude|gemini|copilot|model)\b",
            r"|\b(if\s+you\s+are\s+(an?\s+)?(ai|llm|language\s+model|assistant|chatbot|agent|automated))",
            r"|\b(ai|llm)\s+(assistant|agent|model)s?\s*(:|,\s*(you|please|ignore|do|make|send|call))",
            r"|\bto\s+(the|any)\s+(ai|llm|assistant|agent|chatbot)\s+(reading|processing|summari[sz]ing|parsing)\b)"
        ),
    ),
    rule(
        "role_marker",
        Category::RoleMarker,
        0.9,
        &["<|", "inst", "sys", "im_", "#", "developer", "admin"],
        concat!(
            r"<\|\s*(im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\s*\|>",
            r"|\[/?\s*(inst|sys|system)\s*\]|<</?\s*sys\s*>>|</?\s*(system|im_start|im_end|system_prompt)\s*>",
            r"|(^|\n)\s*#{2,}\s*(system|instructions?|new\s+instructions?|admin|developer)\s*(prompt|message|override)?\s*:?\s*(\n|$)",
            r"|(^|\n)\s*(system|developer)\s*(prompt|message)?\s*:\s*(you|ignore|from\s+now|new|the\s+assistant|always|never)",
            r"|\((system|admin|developer)\s+(message|note|override|instruction)\)",
            r"|\b(end|begin|start)\s+of\s+(the\s+)?system\s+(prompt|input|instructions?|message)"
        ),
    ),
    rule(
        "persona_jailbreak",
        Category::Persona,
        0.85,
        &["mode", "jailbr", "longer", "anything", "act", "behave", "respond", "unrestricted", "unfiltered"],
        concat!(
            r"\b(act|behave|respond)\s+as\s+(an?\s+)?(unrestricted|unfiltered|uncensored|jailbroken|evil|dan\b)",
            r"|\b(developer|god|admin|debug|jailbreak|dan|unrestricted|unfiltered)\s+mode\s+(is\s+)?(on|enabled|activated|now)\b",
            r"|\b(enable|enter|activate|switch\s+to)\s+(developer|god|jailbreak|dan|unrestricted|unfiltered)\s+mode\b",
            r"|\bdo\s+anything\s+now\b|\bjailbr(eak|oken)\b",
            r"|\byou\s+(are|have)\s+no\s+longer\s+(bound|restricted|limited|an?\s+ai)",
            r"|\bno\s+longer\s+(bound|restricted|limited)\s+by\s+(any|your|the)\s+(rules|guidelines|policies|restrictions|instructions)"
        ),
    ),
    // Common in ordinary text too ("from now on, the office closes at six"): weak alone,
    // decisive together with another signal.
    rule(
        "persona_switch",
        Category::Persona,
        0.35,
        &["now", "pretend", "roleplay", "role-play"],
        concat!(
            r"\byou\s+are\s+now\s+(an?\s+|in\s+|the\s+)?\w+",
            r"|\bfrom\s+now\s+on\b[\s,]+(you|your|the\s+assistant|respond|reply|answer|ignore|act)",
            r"|\bpretend\s+(to\s+be|you\s+are|that\s+you)\b|\brole-?play\s+as\b"
        ),
    ),
    rule(
        "prompt_leak",
        Category::PromptLeak,
        0.85,
        &[
            "prompt",
            "instruction",
            "configuration",
            "rules",
            "context",
            "words",
        ],
        concat!(
            r"\b(reveal|print|show|repeat|output|leak|disclose|display|dump|echo|recite|spell\s+out|write\s+out|tell\s+me|give\s+me|share|copy|paste|translate)\s+",
            r"(me\s+|us\s+)?(back\s+)?(all\s+|verbatim\s+|exactly\s+)?(of\s+)?",
            r"(your\s+(entire\s+|full\s+|complete\s+|exact\s+)?(system\s+|initial\s+|original\s+|hidden\s+|secret\s+|internal\s+|pre-?)*(prompts?|instructions|configuration|rules|context\s+window)",
            r"|(the|its)\s+(entire\s+|full\s+|complete\s+|exact\s+)?(system|initial|original|hidden|secret|internal|developer)\s+(prompts?|instructions|message))\b",
            r"|\b(what|which)\s+(is|are|were)\s+your\s+(system\s+|initial\s+|original\s+|hidden\s+)+(prompts?|instructions)\b",
            r"|\bwords\s+(above|before)\s+(this|the)\s+(line|message|text)\b"
        ),
    ),
    rule(
        "concealment",
        Category::Concealment,
        0.9,
        &[
            "user", "human", "operator", "owner", "anyone", "customer", "person",
        ],
        concat!(
            r"\b(do\s+not|don'?t|never|without)\s+(tell(ing)?|mention(ing)?|inform(ing)?|alert(ing)?|notify(ing)?|warn(ing)?|let(ting)?|show(ing)?|reveal(ing)?|disclos(e|ing)|asking|ask|confirm(ing)?\s+with)\s+",
            r"(this\s+|it\s+|that\s+|these\s+|anything\s+)?(to\s+)?(the\s+|your\s+)?(user|human|operator|owner|anyone|customer|person)s?\b",
            r"|\b(the\s+)?(user|human|operator)\s+(must|should|will|need)\s+(not|never)\s+(know|see|find\s+out|be\s+told|notice|learn)",
            r"|\bkeep\s+(this|it|these\s+instructions)\s+(a\s+)?secret\s+from\s+(the\s+)?(user|human)"
        ),
    ),
    rule(
        "exfiltration_markdown",
        Category::Exfiltration,
        0.9,
        &["]("],
        r"!\[[^\]\n]{0,200}\]\(\s*<?https?://[^)\s]*\?[^)\s]*=[^)\s]*(\{|\[|%7b|%5b|<|\$|\b(query|data|secret|token|key|password|history|conversation|chat|message|content|info|prompt|email|base64|b64|context|summary|q)\b)",
    ),
    rule(
        "exfiltration_link",
        Category::Exfiltration,
        0.8,
        &["http"],
        r"(include|append|render|add|insert|output|display|print|embed|place|put|show)\s+[^.\n]{0,60}(image|link|url|markdown|img)[^.\n]{0,80}https?://[^\s)]*(\?|/)[^\s)]*(\{|\[|<|\$|query|data|secret|token|key|password|history|conversation|base64|b64|q=)",
    ),
    rule(
        "exfiltration_send",
        Category::Exfiltration,
        0.75,
        &[
            "send",
            "forward",
            "upload",
            "post",
            "mail",
            "transmit",
            "exfiltrate",
            "leak",
            "copy",
            "share",
        ],
        concat!(
            r"\b(send|forward|upload|post|e-?mail|transmit|exfiltrate|leak|copy|share|mail)\b[^.\n]{0,60}?",
            r"\b(contact\s+list|(all|every|each|full|entire|complete)\s+(of\s+)?(the\s+|your\s+|their\s+)?(contacts|emails|files|data|records|messages|documents|customer|contact|conversation|chat)|conversation\s+history|chat\s+history|credentials?|passwords?|api\s+keys?|secrets?|access\s+tokens?|private\s+keys?|system\s+prompt|personal\s+data|ssh\s+keys?|\.env\b|session\s+cookies?)",
            r"[^.\n]{0,80}?\b(to|at|via)\s+(https?://|[\w.+-]+@[\w-]+\.[\w.]+|\S+\.(com|net|org|io|xyz|ru|example)\b)"
        ),
    ),
    rule(
        "tool_steering",
        Category::ToolSteering,
        0.6,
        &["call", "invoke", "execute", "run", "use", "trigger"],
        r"\b(now\s+|immediately\s+|then\s+|next,?\s+|also\s+|you\s+must\s+|please\s+)(call|invoke|execute|run|use|trigger)\s+(the\s+)?`?[a-z][a-z0-9_]*[._/][a-z][a-z0-9_]*`?\s*(tool|function)?\s*(with|to|on|and|\(|using)",
    ),
    rule(
        "hidden_comment",
        Category::HiddenText,
        0.7,
        &["<!--"],
        r"<!--[^>]{0,600}?\b(ignore|instructions?|assistant|ai|llm|model|agent|do\s+not|don't|you\s+must|you\s+should|call|send|email\.send)\b",
    )
    .with_reach(0, 720),
    // ---- tool descriptions (IO-4: tool poisoning) -------------------------------------------
    description_rule(
        "important_tag",
        Category::HiddenText,
        0.85,
        &[
            "important",
            "secret",
            "hidden",
            "instruction",
            "system",
            "note",
        ],
        r"<\s*(important|secret|hidden|instructions?|system|note\s+to\s+(ai|assistant|model))\s*>",
    ),
    description_rule(
        "cross_tool_reference",
        Category::CrossToolReference,
        0.75,
        &["tool", "function", "call", "invoke", "use", "run"],
        concat!(
            r"\b(before|after|instead\s+of|when|whenever)\s+(using|calling|invoking|running)\s+(any|every|all|other|another|the\s+\w+|this)\s+(other\s+)?(tools?|functions?)\b",
            r"|\b(all|any|every|other|another)\s+(other\s+)?(tools?|functions?)\s+(must|should|will|need)\b",
            r"|\b(also|always|first|then|must)\s+(call|invoke|use|run)\s+(the\s+)?`?[a-z][a-z0-9_]*[._][a-z][a-z0-9_]*`?",
            r"|\b(change|modify|override|redirect|replace)\s+(the\s+)?(behaviou?r|recipient|arguments?|parameters?)\s+of\s+(the\s+)?(other\s+)?\w+\s+(tool|function)"
        ),
    ),
    description_rule(
        "secret_reference",
        Category::SecretReference,
        0.8,
        &[
            "ssh",
            "id_",
            ".env",
            "/etc/",
            "mcp.json",
            ".aws",
            ".npmrc",
            ".netrc",
            "cursor/",
            "claude_desktop",
            "credential",
            "api",
            "password",
            "secret",
            "token",
            "private",
            "cookie",
            "wallet",
            "seed",
            "variable",
        ],
        concat!(
            r"(~/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|\.env\b|/etc/(passwd|shadow)|\bmcp\.json\b|\.aws/credentials|\.npmrc|\.netrc|\bcursor/|claude_desktop_config)",
            r"|\b(read|include|pass|send|add|attach|append|provide|collect|extract|get|fetch)\s+[^.\n]{0,40}\b(credentials?|api[\s_-]?keys?|passwords?|secrets?|tokens?|private\s+keys?|cookies?|wallet|seed\s+phrase|env(ironment)?\s+variables?)\b"
        ),
    ),
    description_rule(
        "skip_confirmation",
        Category::SkipConfirmation,
        0.8,
        &[
            "without",
            "confirm",
            "approv",
            "permission",
            "consent",
            "user",
            "skip",
            "automatically",
            "silently",
        ],
        concat!(
            r"\bwithout\s+(asking|confirmation|confirming|approval|consent|permission|user\s+(approval|consent|confirmation)|prompting|notifying|telling)\b",
            r"|\b(do\s+not|don'?t|never|no\s+need\s+to)\s+(ask|confirm|request|seek|wait\s+for)\s+[^.\n]{0,30}?(confirmation|approval|permission|consent|the\s+user)",
            r"|\bskip\s+(the\s+)?(confirmation|approval|review|verification)\b",
            r"|\b(automatically|silently)\s+(approve|confirm|execute|run|send|transfer|delete|accept)\b"
        ),
    ),
];

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn every_rule_has_a_cue_its_pattern_needs() {
        for r in RULES {
            assert!(!r.cues.is_empty(), "{} has no cue", r.id);
            assert!((0.0..=1.0).contains(&r.score), "{}", r.id);
        }
    }
}
