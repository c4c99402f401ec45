# Serving image (linux/amd64): the web app, its migrations and the bundled models. No torch.
# Every Python package comes from requirements/run.lock, hash-checked.

# ---- build: the fetalcns wheel (code + migrations, templates, static, models as data files)
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/run.lock requirements/run.lock
# The lock includes the build backend (setuptools), so the wheel is built with pinned tools.
RUN pip install --require-hashes --no-deps -r requirements/run.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY models ./models
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# ---- runtime
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FETALCNS_DATA_DIR=/var/lib/fetalcns

RUN useradd --system --home-dir /var/lib/fetalcns --create-home fetalcns
COPY requirements/run.lock /tmp/run.lock
RUN pip install --require-hashes --no-deps -r /tmp/run.lock && rm /tmp/run.lock
COPY --from=build /wheels /tmp/wheels
# The wheel puts migrations/, templates/, static/ and models/ under /usr/local/share/fetalcns.
RUN pip install --no-deps --no-index /tmp/wheels/*.whl && rm -rf /tmp/wheels && fetalcns --version

USER fetalcns
WORKDIR /var/lib/fetalcns
EXPOSE 8000
VOLUME ["/var/lib/fetalcns"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
# The server only: migrations and the first administrator are one-shot commands run once per
# release, not on every replica's start (`docker run IMAGE fetalcns db upgrade`, then
# `fetalcns users bootstrap-admin`; compose.yaml's `migrate` service). Exec form: fetalcns (and
# uvicorn in it) is PID 1 and gets `docker stop`'s SIGTERM itself.
CMD ["fetalcns", "serve", "--host", "0.0.0.0", "--port", "8000"]
