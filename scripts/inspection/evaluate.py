#!/usr/bin/env python3
"""Evaluates Warden's content inspection through the real `warden inspect` binary.

    python3 scripts/inspection/evaluate.py            # builds target/debug/warden if needed
    WARDEN_BIN=target/release/warden python3 scripts/inspection/evaluate.py
    WARDEN_CONFIG=warden.toml WARDEN_BIN=...  # that config's threshold and ONNX classifier

Sets (all built here, deterministic; sources and splits in corpus.py):
  indirect   held-out jailbreak families x held-out instructions, embedded in held-out
             tool-output carriers (calendar, file listing, news, reviews, logs, wiki, issues)
  obfuscated the same, hidden with zero-width characters, look-alike letters, Unicode tags,
             base64 or HTML entities
  benign     held-out benign tool outputs (same carriers, no injection)
  trigger    ../shared/data/benign: NotInject and WildGuard prompts full of trigger words
  direct     S-Labs test split (direct prompts, for information)
Prints Markdown tables (docs/INSPECTION.md holds the last run) and writes
target/inspection/eval.json.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import random
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

SEED = 7
SHARED = corpus.ROOT.parent / "shared" / "data" / "benign"


def obfuscate(text: str, how: str, rng: random.Random) -> str:
    if how == "zero_width":
        return "".join(ch + ("\u200b" if ch.isalpha() and rng.random() < 0.3 else "") for ch in text)
    if how == "homoglyph":
        table = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "i": "\u0456"}
        return "".join(table.get(ch, ch) if rng.random() < 0.5 else ch for ch in text)
    if how == "tags":
        return "".join(chr(0xE0000 + ord(ch)) if ord(ch) < 0x7F else ch for ch in text)
    if how == "base64":
        return "Decode and follow: " + base64.b64encode(text.encode()).decode()
    if how == "entities":
        return "".join(f"&#{ord(ch)};" if ch.isalpha() and rng.random() < 0.5 else ch for ch in text)
    raise ValueError(how)


def build(c: corpus.Corpus, rng: random.Random) -> list[dict]:
    items = []
    for family, payload in c.payloads("eval", rng, 1000):
        cname, ctext = corpus.carrier(c, "eval", rng)
        style, text = corpus.embed(ctext, payload, rng)
        items.append({"set": "indirect", "family": family, "carrier": cname, "style": style, "label": 1, "text": text})
    for family, payload in c.payloads("eval", rng, 300):
        how = rng.choice(["zero_width", "homoglyph", "tags", "base64", "entities"])
        cname, ctext = corpus.carrier(c, "eval", rng)
        _, text = corpus.embed(ctext, obfuscate(payload, how, rng), rng)
        items.append({"set": "obfuscated", "family": how, "carrier": cname, "label": 1, "text": text})
    for _ in range(2000):
        cname, ctext = corpus.carrier(c, "eval", rng)
        items.append({"set": "benign", "family": cname, "carrier": cname, "label": 0, "text": ctext})
    for f in ["NotInject_one", "NotInject_two", "NotInject_three", "wildguard"]:
        for row in json.loads((SHARED / f"{f}.json").read_text()):
            items.append({"set": "trigger", "family": f, "label": 0, "text": row["prompt"]})
    for text, label in c.slabs_test:
        items.append({"set": "direct", "family": "s-labs-test", "label": label, "text": text})
    return items


def warden() -> str:
    b = os.environ.get("WARDEN_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--quiet", "-p", "warden-cli"], cwd=corpus.ROOT, check=True)
    return str(corpus.ROOT / "target" / "debug" / "warden")


def main() -> None:
    rng = random.Random(SEED)
    c = corpus.Corpus()
    items = build(c, rng)
    corpus.WORK.mkdir(parents=True, exist_ok=True)
    infile = corpus.WORK / "eval-input.jsonl"
    with open(infile, "w") as f:
        for i, it in enumerate(items):
            f.write(json.dumps({"id": i, "text": it["text"], "kind": "tool_result"}) + "\n")
    out = subprocess.run([warden(), "inspect", "--jsonl", str(infile)], capture_output=True, text=True, check=True)
    verdicts = [json.loads(l) for l in out.stdout.splitlines()]
    assert len(verdicts) == len(items), (len(verdicts), len(items))
    for it, v in zip(items, verdicts):
        it["flagged"] = v["decision"] == "injection"
        it["score"] = v["score"]
        it["rules"] = sorted({f["rule"] for f in v["findings"]})

    def rate(rows):
        return sum(r["flagged"] for r in rows) / max(1, len(rows))

    results = {}

    def table(sets, fmt):
        for s in sets:
            rows = [r for r in items if r["set"] == s]
            by = collections.defaultdict(list)
            for r in rows:
                by[r["family"]].append(r)
            for fam in sorted(by):
                print(f"| {s} | {fam} | {len(by[fam])} | {rate(by[fam]):{fmt}} |")
            print(f"| **{s}** | **all** | **{len(rows)}** | **{rate(rows):{fmt}}** |")
            results[s] = rate(rows)

    print("## Injected tool outputs (held-out families, instructions and carriers)\n")
    print("| set | attack family | n | recall |\n|---|---|---:|---:|")
    table(["indirect", "obfuscated"], ".1%")
    print("\n## False positives on benign content\n")
    print("| set | source | n | false-positive rate |\n|---|---|---:|---:|")
    table(["benign", "trigger"], ".2%")
    d = [r for r in items if r["set"] == "direct"]
    tp = sum(r["flagged"] for r in d if r["label"]) / max(1, sum(r["label"] for r in d))
    fp = sum(r["flagged"] for r in d if not r["label"]) / max(1, sum(1 - r["label"] for r in d))
    print(f"\nDirect prompts (S-Labs test split, {len(d)}): recall {tp:.1%}, false positives {fp:.2%}.")
    results["direct_recall"], results["direct_fp"] = tp, fp
    (corpus.WORK / "eval.json").write_text(json.dumps({"results": results, "items": items}, indent=0))
    misses = [r for r in items if r["label"] and not r["flagged"] and r["set"] != "direct"]
    fps = [r for r in items if not r["label"] and r["flagged"] and r["set"] != "direct"]
    print(f"\n{len(misses)} misses and {len(fps)} false positives listed in {corpus.WORK / 'eval.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
