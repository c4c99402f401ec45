# Serving image: the web app, its migrations and the bundled models. No torch.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FETALCNS_DATA_DIR=/var/lib/fetalcns \
    FETALCNS_DATABASE_URL=sqlite:////var/lib/fetalcns/fetalcns.db \
    FETALCNS_STORAGE_DIR=/var/lib/fetalcns/storage \
    FETALCNS_MODEL_DIR=/opt/fetalcns/models/fetal-cns-demo

RUN useradd --system --home-dir /var/lib/fetalcns --create-home fetalcns

WORKDIR /opt/fetalcns
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install .
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY models ./models

USER fetalcns
EXPOSE 8000
VOLUME ["/var/lib/fetalcns"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
# Migrations are idempotent; the admin password is taken from FETALCNS_ADMIN_PASSWORD or printed once.
CMD ["sh", "-c", "fetalcns db upgrade && fetalcns users bootstrap-admin && fetalcns serve --host 0.0.0.0 --port 8000"]
