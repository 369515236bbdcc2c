# One image for every gridshare service (ingest, oracle, api, sim, init).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm postgresql-client curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

COPY pyproject.toml README.md ./
COPY gridshare gridshare
COPY ingest ingest
COPY oracle oracle
COPY api api
COPY gateway gateway
COPY devices-sim devices-sim
COPY bridges bridges
COPY contracts contracts
COPY scripts scripts
RUN pip install --no-cache-dir -e . \
    && python -m gridshare.core.chain.toolchain

ENV GRIDSHARE_STATE_DIR=/state
VOLUME ["/state"]
ENTRYPOINT ["gridshare"]
