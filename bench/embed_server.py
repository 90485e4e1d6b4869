"""embed-server throughput and latency against the same model in-process.

Starts `conveyor embed-server`'s app (uvicorn, in this process's threads, the
model loaded once), then:
  * throughput with 1, 4 and 16 concurrent clients, each sending requests of
    --batch texts of ~200 words, against the same backend encoding the same
    texts in-process (goal: >= 0.9 of in-process at 16 clients);
  * p50 / p99 latency of a single short text on an idle server (goal p99 < 25 ms);
  * resident memory.

    python bench/embed_server.py
    python bench/embed_server.py --texts 256 --batch 8
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import numpy as np
import uvicorn

from conveyor.app import Components
from conveyor.embedding.local import LocalEmbedder
from conveyor.server.embed import create_app
from conveyor.settings import Settings
from conveyor.testing import prose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=320, help="texts per throughput run")
    parser.add_argument("--batch", type=int, default=8, help="texts per request")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx", "onnx-int8"],
        help="backend the server runs",
    )
    args = parser.parse_args()

    import tempfile

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="conveyor-bench-")))
    texts = [" ".join(prose(i, 200).split()[:200]) for i in range(args.texts)]
    torch_model = LocalEmbedder(settings.model, batch_size=16)
    torch_model.load()
    reference = torch_model.embed(texts[:64])
    print("backends, raw, batches of 16 (~200-word chunks):")
    torch_rate = 0.0
    for backend in ("torch", "onnx", "onnx-int8"):
        candidate = Components(settings.model_copy(update={"embedding_backend": backend}))
        embedder = candidate.local_embedder
        embedder.embed(texts[:16])  # load (and export, once)
        t = time.perf_counter()
        vectors = np.vstack([embedder.embed(texts[i : i + 16]) for i in range(0, 64, 16)])
        rate = 64 / (time.perf_counter() - t)
        torch_rate = torch_rate or rate
        cosine = np.sum(vectors * reference, axis=1)
        print(
            f"  {backend:<10} {rate:6.1f} texts/s  ({rate / torch_rate:.2f}x torch)  "
            f"cosine to torch mean {cosine.mean():.4f} min {cosine.min():.4f}"
        )

    settings = settings.model_copy(update={"embedding_backend": args.backend})
    model = Components(settings).local_embedder
    model.embed(texts[:16])
    print(f"server backend: {args.backend}")

    t = time.perf_counter()
    model.embed(texts)
    local = args.texts / (time.perf_counter() - t)
    print(f"in-process, one call:   {local:7.1f} texts/s")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, embedder=model), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)

    requests = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    for clients in (1, 4, 16):
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(
                    pool.map(
                        lambda chunk: http.post(
                            url + "/embed", json={"texts": chunk}
                        ).raise_for_status(),
                        requests,
                    )
                )
            rate = args.texts / (time.perf_counter() - t)
        print(
            f"server, {clients:2d} client(s):   {rate:7.1f} texts/s  "
            f"({rate / local:.2f} of in-process)"
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:               {peak:7.0f} MiB")
    server.should_exit = True


if __name__ == "__main__":
    main()
