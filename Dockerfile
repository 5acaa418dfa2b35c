# The API served by daphne, as a non-root user. Configuration comes from the environment
# (see the README's table); the image holds no secrets.
# GraphiQL's browser assets come from the npm registry at build time, never from a CDN at run time.
FROM node:20-slim AS graphiql-assets
WORKDIR /assets
COPY backend/graphiql/package.json backend/graphiql/package-lock.json backend/graphiql/copy-assets.mjs ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DJANGO_ENV=production DATA_DIR=/data STATIC_ROOT=/app/staticfiles HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    MODEL_CACHE_DIR=/app/models

# To take torch's CPU build instead of the default one, pass a CPU wheel index at build time.
ARG PIP_EXTRA_INDEX_URL=""

# Tesseract with English data: OCR of scans and images (OCR_LANGUAGES; add tesseract-ocr-<lang> for more).
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system app && useradd --system --gid app --home-dir /app app \
    && mkdir -p /app /data && chown app:app /data

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=app:app . .
COPY --from=graphiql-assets --chown=app:app /assets/static backend/graphiql/static
# Static files (admin, GraphiQL) are collected once, then served by WhiteNoise.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput
# The embedding model's ONNX exports (fused, int8 for documents, fp32 for queries) are made from the
# packaged weights at build time, not on the first upload.
RUN SECRET_KEY=build-only ALLOWED_HOSTS=localhost python manage.py prepare_models
USER app

EXPOSE 8000
VOLUME ["/data"]
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python -m backend.serve -b 0.0.0.0 -p 8000 backend.asgi:application"]
