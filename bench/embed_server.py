"""embed-server throughput and latency against the same model in-process.

Texts are ~200-word chunks (about 256 tokens, what the model reads). Steps:
  * the backends raw, batches of 16: torch, ONNX fp32 and int8 (and OpenVINO
    int8 when its extra is installed) back to back,
    --rounds times (the best of each is kept; the spread says how noisy the
    machine was), with the cosine of their vectors to torch's;
  * `conveyor embed-server`'s app (uvicorn in this process's threads, the
    model loaded once) with 1, 4 and 16 concurrent clients, each sending
    requests of --batch texts, against the same backend encoding the same
    texts in-process (goal: >= 0.9 of in-process at 16 clients);
  * p50 / p99 latency of a single short text on an idle server (goal p99 < 25 ms);
  * resident memory;
  * with --peer-url (repeatable): the same OpenAI-style load
    (POST {url}/embeddings, --peer-clients clients x --peer-batch texts) against
    each URL, rounds interleaved so every server sees the same machine — for
    another `conveyor embed-server` (http://host:port/v1) or a peer such as
    Infinity (http://host:port); the cosine of its vectors to torch's says it
    serves the same model.

    python bench/embed_server.py
    python bench/embed_server.py --backend onnx-int8 --rounds 3
    python bench/embed_server.py --peer-only \\
        --peer-url http://127.0.0.1:8003/v1 --peer-url http://127.0.0.1:7997
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import numpy as np
import uvicorn

from conveyor.app import Components
from conveyor.embedding.local import LocalEmbedder
from conveyor.server.embed import create_app
from conveyor.settings import Settings
from conveyor.testing import prose

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino-int8")


def installed(backend: str) -> bool:
    """Whether ``backend``'s runtime is here (openvino-int8 is an extra)."""
    if backend != "openvino-int8":
        return True
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("openvino", "nncf"))


def chunks(n: int, offset: int = 0) -> list[str]:
    return [" ".join(prose(offset + i, 200).split()[:200]) for i in range(n)]


def spread(rates: list[float]) -> str:
    return f"spread {(max(rates) - min(rates)) / max(rates):4.0%}" if len(rates) > 1 else ""


def backends(settings: Settings, texts: list[str], reference: np.ndarray, rounds: int) -> None:
    """Raw speed of each backend, interleaved so that a busy moment hits all of them."""
    models = {}
    for backend in filter(installed, BACKENDS):
        model = Components(settings.model_copy(update={"embedding_backend": backend}))
        models[backend] = model.local_embedder
        models[backend].embed(texts[:16])  # load (and export, once)
    rates: dict[str, list[float]] = {b: [] for b in models}
    cosines = {}
    for _ in range(rounds):
        for backend, model in models.items():
            t = time.perf_counter()
            vectors = np.vstack([model.embed(texts[i : i + 16]) for i in range(0, 64, 16)])
            rates[backend].append(64 / (time.perf_counter() - t))
            cosines[backend] = np.sum(vectors * reference, axis=1)
    print(f"backends, raw, batches of 16 (~200-word chunks), best of {rounds}:")
    for backend in models:
        best, base = max(rates[backend]), max(rates["torch"])
        cosine = cosines[backend]
        print(
            f"  {backend:<13} {best:6.1f} texts/s  ({best / base:.2f}x torch)  "
            f"cosine to torch mean {cosine.mean():.4f} min {cosine.min():.4f}  "
            f"{spread(rates[backend])}"
        )


def start_server(settings: Settings, model: Any) -> tuple[str, uvicorn.Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings, embedder=model)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return url, server
        except httpx.TransportError:
            time.sleep(0.1)


def load(url: str, requests: list[list[str]], clients: int, send: Any) -> float:
    """Texts a second for ``requests`` sent by ``clients`` concurrent clients."""
    total = sum(len(r) for r in requests)
    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        send(http, requests[0])  # warm the connection and the server
        t = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda chunk: send(http, chunk), requests))
        return total / (time.perf_counter() - t)


def own_server(settings: Settings, texts: list[str], batch: int, rounds: int) -> None:
    model = Components(settings).local_embedder
    model.embed(texts[:16])
    print(f"server backend: {settings.embedding_backend}, best of {rounds}")
    url, server = start_server(settings, model)

    def send(http: httpx.Client, chunk: list[str]) -> None:
        http.post(url + "/embed", json={"texts": chunk}).raise_for_status()

    requests = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    rates: dict[str, list[float]] = {"local": [], "1": [], "4": [], "16": []}
    for _ in range(rounds):  # in-process and server back to back, for fair ratios
        t = time.perf_counter()
        model.embed(texts)
        rates["local"].append(len(texts) / (time.perf_counter() - t))
        for clients in (1, 4, 16):
            rates[str(clients)].append(load(url, requests, clients, send))
    local = max(rates["local"])
    print(f"in-process, one call:   {local:7.1f} texts/s  {spread(rates['local'])}")
    for clients in (1, 4, 16):
        rate = max(rates[str(clients)])
        print(
            f"server, {clients:2d} client(s):   {rate:7.1f} texts/s  "
            f"({rate / local:.2f} of in-process)  {spread(rates[str(clients)])}"
        )

    with httpx.Client() as http:
        latencies = []
        for _ in range(200):
            t = time.perf_counter()
            http.post(url + "/embed", json={"texts": ["how do I rotate the keys?"]})
            latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    print(
        f"single short text:      p50 {statistics.median(latencies):5.1f} ms  "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1]:5.1f} ms  (goal p99 < 25 ms)"
    )
    server.should_exit = True


def peers(args: argparse.Namespace, reference_model: LocalEmbedder) -> None:
    """The same OpenAI-style load against each URL, rounds interleaved."""
    texts = chunks(args.peer_texts, offset=1000)
    requests = [texts[i : i + args.peer_batch] for i in range(0, len(texts), args.peer_batch)]
    reference = reference_model.embed(texts[: args.peer_batch])

    def sender(url: str) -> Any:
        def send(http: httpx.Client, chunk: list[str]) -> list[list[float]]:
            body = {"model": args.peer_model, "input": chunk}
            response = http.post(url + "/embeddings", json=body)
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            assert len(data) == len(chunk), (url, len(data))
            return [d["embedding"] for d in data]

        return send

    rates: dict[str, list[float]] = {url: [] for url in args.peer_url}
    for _ in range(args.rounds):
        for url in args.peer_url:
            rates[url].append(load(url, requests, args.peer_clients, sender(url)))
    print(
        f"OpenAI-style load: {args.peer_clients} clients x {args.peer_batch} texts "
        f"(~200 words), {len(texts)} texts, best of {args.rounds}:"
    )
    for url in args.peer_url:
        with httpx.Client(timeout=300) as http:
            vectors = np.asarray(sender(url)(http, texts[: args.peer_batch]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cosine = np.sum(vectors * reference, axis=1)
        print(
            f"  {url:<32} {max(rates[url]):6.1f} texts/s  {spread(rates[url])}  "
            f"cosine to torch mean {cosine.mean():.4f} min {cosine.min():.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=320, help="texts per throughput run")
    parser.add_argument("--batch", type=int, default=8, help="texts per request")
    parser.add_argument("--backend", default="torch", choices=BACKENDS, help="server backend")
    parser.add_argument("--rounds", type=int, default=3, help="repeats; the best is kept")
    parser.add_argument("--peer-url", action="append", default=[], help="OpenAI base URL")
    parser.add_argument("--peer-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--peer-clients", type=int, default=4)
    parser.add_argument("--peer-batch", type=int, default=32, help="texts per peer request")
    parser.add_argument("--peer-texts", type=int, default=512, help="texts per peer run")
    parser.add_argument("--peer-only", action="store_true", help="only the --peer-url runs")
    args = parser.parse_args()

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="conveyor-bench-")))
    torch_model = LocalEmbedder(settings.model, batch_size=16)
    torch_model.load()
    if not args.peer_only:
        texts = chunks(args.texts)
        backends(settings, texts, torch_model.embed(texts[:64]), args.rounds)
        served = settings.model_copy(update={"embedding_backend": args.backend})
        own_server(served, texts, args.batch, args.rounds)
    if args.peer_url:
        peers(args, torch_model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:7.0f} MiB")


if __name__ == "__main__":
    main()
