#!/usr/bin/env python3
"""Builds a small, real ONNX sequence classifier and its Hugging Face `tokenizer.json`, for
testing Warden's optional ONNX backend (`cargo test -p warden-inspect --features onnx`).

    python3 scripts/inspection/onnx_fixture.py OUT_DIR

Needs the `onnx` package (PyPI). The model follows the contract a Hugging Face
sequence-classification export has: inputs `input_ids` and `attention_mask` (int64,
[1, tokens]), output `logits` (float, [1, 2]; class 1 = injection). It is a bag of words
(each token's weight summed under the mask, plus a bias), which is enough to check that
tokenisation, windows, tensors and ONNX Runtime work end to end; it is not a detector.
"""

import json
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
INJECTION = ["ignore", "previous", "instructions", "disregard", "exfiltrate", "password"]
BENIGN = ["the", "weather", "is", "nice", "today", "meeting", "at", "noon", "report", "sales",
          "grew", "and", "a", "of", "in", "to", "we", "quarter", "all", "reply", "only", "with"]
WEIGHT = 3.0
BIAS = -2.0


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    words = SPECIAL + INJECTION + BENIGN
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for t in SPECIAL
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [vocab["[CLS]"]], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [vocab["[SEP]"]], "tokens": ["[SEP]"]},
            },
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, indent=1))

    weights = [WEIGHT if w in INJECTION else 0.0 for w in words]
    nodes = [
        helper.make_node("Gather", ["weights", "input_ids"], ["per_token"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["per_token", "mask_f"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["summed"], keepdims=1),
        helper.make_node("Add", ["summed", "bias"], ["injection"]),
        helper.make_node("Neg", ["injection"], ["benign"]),
        helper.make_node("Concat", ["benign", "injection"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bag_of_words_injection",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "tokens"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        initializer=[
            helper.make_tensor("weights", TensorProto.FLOAT, [len(words)], weights),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("bias", TensorProto.FLOAT, [1], [BIAS]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(out / "model.onnx"))
    print(f"wrote {out / 'model.onnx'} and {out / 'tokenizer.json'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
