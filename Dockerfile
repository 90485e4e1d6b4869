# One image for every role; the command picks it:
#   docker run conveyor worker --concurrency 3
#   docker run -p 8000:8000 conveyor serve --host 0.0.0.0 --port 8000
#   docker run -p 8003:8003 conveyor embed-server --host 0.0.0.0 --port 8003
#   docker run -e INPUT_JSON='{"FileURI": "s3://…"}' conveyor run-job
#   docker build --target lambda -t conveyor-lambda .   (the AWS Lambda image)
# Kept in step with the Makefile: the same CPU torch pin, the same Debian packages for
# OCR, the same pip extras minus the test-only ones (tests/unit/test_packaging.py checks).
FROM python:3.11-slim-bookworm AS base

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    CONVEYOR_HOME=/data

# Runtime Debian packages (the Makefile's APT_PACKAGES without the test-only ones).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU build of PyTorch (an unpinned torch pulls a multi-GB CUDA build).
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY conveyor ./conveyor
# gcc builds webrtcvad (resemblyzer's dependency; PyPI has it only as source), then goes.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install ".[audio,onnx,openvino,server,postgres,aws,chroma,qdrant,otel,llm]" "torch==2.13.0" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

# Export the ONNX model and quantise it for OpenVINO (the default backend) at build time,
# into the folder the image's processes read, so the first job doesn't pay for it: the
# conveyor user cannot write there.
ENV CONVEYOR_MODELS_DIR=/opt/conveyor/models
RUN CONVEYOR_HOME=/opt/conveyor conveyor models export --openvino

RUN useradd --create-home --uid 10001 conveyor && mkdir -p /data && chown conveyor /data

# AWS Lambda (container image, fed by SQS): `docker build --target lambda`. The runtime
# interface client calls the handler; only /tmp is writable there.
FROM base AS lambda
RUN pip install awslambdaric
ENV CONVEYOR_HOME=/tmp/conveyor
USER conveyor
ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["conveyor.aws.lambda_handler.handler"]

# The default image: worker, serve, embed-server, run-job, ingest, … (`docker build .`).
FROM base AS app
USER conveyor
VOLUME ["/data"]
ENTRYPOINT ["conveyor"]
CMD ["worker", "--concurrency", "2"]
