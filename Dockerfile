# masd in a container: slim Python, a non-root user, data in a volume.
#   docker build -t masd .
#   docker run -p 8080:8080 -v masd-data:/data masd              # embedded defaults (SQLite, sim carrier)
#   docker run -v masd-data:/data masd apps create oa            # any CLI command
#   docker run -e MASD_STORE__URL=postgresql://masd@db/masd …    # PostgreSQL instead of SQLite
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system masd && useradd --system --gid masd --home-dir /data --shell /usr/sbin/nologin masd \
    && mkdir -p /data && chown masd:masd /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY masd ./masd
COPY adapters ./adapters
COPY config ./config
RUN pip install .

USER masd
ENV MASD_NODE__DATA_DIR=/data \
    MASD_HTTP__LISTEN=0.0.0.0:8080 \
    MASD_LOG__FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["masd"]
CMD ["run"]
