# The image of every phaser service (router, worker, trainer, monitor, load).
# Build: docker build -t phaser .   Run: docker run --rm phaser phaser --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# dependencies first (cached layer), then the code
COPY pyproject.toml README.md ./
COPY phaser ./phaser
COPY protos ./protos
COPY services ./services
COPY load_generator ./load_generator
COPY policy_trainer ./policy_trainer
RUN pip install . && useradd --create-home phaser && mkdir -p /var/lib/phaser/checkpoints \
    && chown phaser /var/lib/phaser/checkpoints

USER phaser
CMD ["phaser", "--help"]
