#!/usr/bin/env python3
"""Writes the golden files of the text path (spec §5; see README.md here, "Text encoder goldens").

    pip install torch transformers ftfy sentencepiece protobuf safetensors h5py numpy   # CPU is enough
    python3 tests/golden/make_text_golden.py          # writes next to this script (--out DIR to write elsewhere)

Outputs:
  text_tokens.h5           tricky prompts: UTF-8 bytes, the Python clean-up's result, HF token ids [512] and the real
                           length, from transformers' T5Tokenizer loaded on the project's tiny spiece.model; plus the
                           relative position bucket of every offset −511..511 from transformers' UMT5Attention
  tiny_umt5/text_encoder/  a tiny random UMT5EncoderModel (our `tiny` config), bf16 safetensors + config.json
  text_encoder.h5          its output (the bf16 weights widened to float64, run in float64, stored f32) sliced to
                           the real length, for a few prompts
Deterministic: fixed seeds, one CPU thread, HDF5 timestamps off. Prints the SHA-256 of every file written.
"""

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import sys
import tempfile

import ftfy
import h5py
import numpy as np
import sentencepiece
import torch
import transformers
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel
from transformers.models.umt5.modeling_umt5 import UMT5Attention

HERE = os.path.dirname(os.path.abspath(__file__))
SPIECE = os.path.join(HERE, "..", "..", "model", "text", "tiny_spm", "spiece.model")
CORPUS = os.path.join(HERE, "..", "..", "model", "text", "tiny_spm", "corpus.txt")
TEXT_LEN = 512
SEED_WEIGHTS = 20260601

# Our `tiny` text encoder (model/text/umt5_config.cc).
TINY = dict(vocab_size=384, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            layer_norm_epsilon=1e-6, dropout_rate=0.0)


def long_prompt():
    lines = [l.strip() for l in open(CORPUS, encoding="utf-8") if l.strip()]
    return " ".join(lines * 2)  # well past 512 tokens


PROMPTS = [
    "A cat walks on the grass, realistic style.",
    "Café crème brûlée à São Paulo, naïve façade, Zürich, Kraków, jalapeño",
    "Cafe\u0301 cre\u0300me n\u0303 (decomposed accents, NFC joins them)",
    "一只猫在草地上行走，东京的夜景。 고양이가 잔디 위를 걷는다. ネコが歩く",
    "A dog 🐶 with sunglasses 😎 at the beach 🏖️, family 👨‍👩‍👧, flag 🇯🇵",
    "\u201cHello,\u201d she said \u2014 it\u2019s \u2018fine\u2019\u2026 \u201enot\u201f \u02bcokay\u02bc",
    "Tom &amp; Jerry &lt;3 &quot;cartoon&quot; &copy; 2024 &#8212; &#x1F600; &eacute;t&eacute; &hellip;",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt; and &amp;amp; and &amp;quot;quoted&amp;quot; &amp;#39;x&amp;#39;",
    "a <tag> &amp; b &lt; c &amp;lt; d",
    "first line &amp; fine\nsecond <line> &amp; kept\nthird &amp; also kept",
    "AT&T &copy 2024 &amp fish &ampchips &notit &notin; P&EACUTE;REZ &NTILDE; &nTILDE;",
    "&#0; &#128; &#x80; &#65;&#x42; &#1114112; &#xD800; &#x7f; &#65a; &#xZZ; &#; &# 12",
    "  lots   of\t\ttabs\n\nand newlines \u3000 ideographic\u00a0nbsp\u2009thin \u200a hair  ",
    "bell\x07 escape\x1b[31mred\x1b[0m zero-width\u200b joiner\u200d BOM\ufeff del\x7f C1\x85 dash\x96 \x80uro",
    "ＬＯＵＤ　ＮＯＩＳＥＳ ｶﾀｶﾅ ﬁne ﬂower ĳssel ǆ",
    "line1\r\nline2\rline3\u2028line4\u2029line5",
    "the </s> end <pad> and <unk> tokens",
    "",
    "   \t \n  ",
    long_prompt(),
    "Neon city street in the rain at night, people with umbrellas",
    "A red fox trots through fresh snow at dawn, cinematic, soft light",
]
ENCODER_PROMPTS = [0, 1, 4, 16, 17, 21]  # indices into PROMPTS run through the tiny encoder (incl. empty)


def wan_clean(text):
    """Wan tokenizers.py (clean='whitespace') = diffusers' prompt_clean: basic_clean then whitespace_clean."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    text = text.strip()
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def utf8_bytes(s):
    b = list(s.encode("utf-8")) + [0]  # NUL-terminated: an empty text is one element
    return np.array(b, dtype=np.uint8)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def versions():
    return json.dumps({"python": sys.version.split()[0], "torch": torch.__version__,
                       "transformers": transformers.__version__, "ftfy": ftfy.__version__,
                       "sentencepiece": sentencepiece.__version__, "h5py": h5py.__version__,
                       "numpy": np.__version__}, sort_keys=True)


def h5_create(path):
    return h5py.File(path, "w", track_order=False, libver="earliest")


def make_tokenizer():
    d = tempfile.mkdtemp()
    shutil.copy(SPIECE, os.path.join(d, "spiece.model"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>", "pad_token": "<pad>",
                   "unk_token": "<unk>", "model_max_length": TEXT_LEN}, f)
    tok = AutoTokenizer.from_pretrained(d)
    shutil.rmtree(d)
    assert len(tok) == 384, len(tok)
    return tok


def tokenize(tok, text):
    enc = tok(wan_clean(text), padding="max_length", truncation=True, max_length=TEXT_LEN, add_special_tokens=True)
    ids = np.array(enc["input_ids"], dtype=np.int32)
    mask = np.array(enc["attention_mask"], dtype=np.int64)
    return ids, int(mask.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    written = []
    tok = make_tokenizer()

    # --- token ids
    path = os.path.join(args.out, "text_tokens.h5")
    with h5_create(path) as f:
        f.attrs["versions"] = versions()
        f.attrs["tokenizer"] = "transformers T5Tokenizer on model/text/tiny_spm/spiece.model, extra_ids=0"
        f.create_dataset("count", data=np.int64(len(PROMPTS)))
        for i, p in enumerate(PROMPTS):
            ids, length = tokenize(tok, p)
            g = f"p/{i}/"
            f.create_dataset(g + "text", data=utf8_bytes(p))
            f.create_dataset(g + "clean", data=utf8_bytes(wan_clean(p)))
            f.create_dataset(g + "ids", data=ids)
            f.create_dataset(g + "length", data=np.int64(length))
        rel = torch.arange(-(TEXT_LEN - 1), TEXT_LEN, dtype=torch.long)
        attn = UMT5Attention(UMT5Config(**TINY), has_relative_attention_bias=True)
        buckets = attn._relative_position_bucket(rel)
        f.create_dataset("buckets", data=buckets.numpy().astype(np.int8))
    written.append(path)

    # --- tiny random encoder
    torch.manual_seed(0)
    model = UMT5EncoderModel(UMT5Config(**TINY)).eval()
    gen = torch.Generator().manual_seed(SEED_WEIGHTS)
    state = model.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            if name == "encoder.embed_tokens.weight":
                continue  # tied to shared.weight
            p = state[name]
            if "layer_norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif "relative_attention_bias" in name:
                v = 0.5 * torch.randn(p.shape, generator=gen)
            elif name == "shared.weight":
                v = torch.randn(p.shape, generator=gen)
            else:
                v = torch.randn(p.shape, generator=gen) / np.sqrt(p.shape[1])
            p.copy_(v)
    enc_dir = os.path.join(args.out, "tiny_umt5", "text_encoder")
    shutil.rmtree(os.path.join(args.out, "tiny_umt5"), ignore_errors=True)
    model = model.to(torch.bfloat16)  # stored bf16 (half the bytes; the loader's bf16 path)
    model.save_pretrained(enc_dir, safe_serialization=True)
    # Reload check: the folder alone reproduces the weights.
    again = UMT5EncoderModel.from_pretrained(enc_dir, dtype=torch.bfloat16).eval()
    for k, v in again.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    for fn in sorted(os.listdir(enc_dir)):
        written.append(os.path.join(enc_dir, fn))

    path = os.path.join(args.out, "text_encoder.h5")
    model64 = model.double()
    with h5_create(path) as f:
        f.attrs["versions"] = versions()
        f.attrs["model"] = "tiny_umt5/text_encoder, run in float64 on 512 tokens with the attention mask"
        f.create_dataset("count", data=np.int64(len(ENCODER_PROMPTS)))
        for n, i in enumerate(ENCODER_PROMPTS):
            ids, length = tokenize(tok, PROMPTS[i])
            with torch.no_grad():
                out = model64(input_ids=torch.tensor(ids)[None],
                              attention_mask=torch.tensor((np.arange(TEXT_LEN) < length).astype(np.int64))[None])
            hidden = out.last_hidden_state[0, :length].numpy()  # spec §5.2: sliced to the real length
            g = f"p/{n}/"
            f.create_dataset(g + "ids", data=ids)
            f.create_dataset(g + "length", data=np.int64(length))
            f.create_dataset(g + "hidden", data=hidden.astype(np.float32))
    written.append(path)

    for p in written:
        print(f"{sha256(p)}  {os.path.relpath(p, args.out)}")


if __name__ == "__main__":
    main()
