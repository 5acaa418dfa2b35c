"""Django settings, read from environment variables with safe defaults.

The embedded default (no variables set) is a single process: SQLite in WAL mode, an in-memory
channel layer, a local-memory cache, local files and in-process background work. Each scale-out
part switches on when its variable is set (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL,
STORAGE_BACKEND=s3). ``DJANGO_ENV=production`` refuses to start without SECRET_KEY and
ALLOWED_HOSTS and turns on every deploy check.
"""

import os
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DJANGO_ENV = env("DJANGO_ENV", "development")  # development | production | test
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)

DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var")))

if PRODUCTION:
    SECRET_KEY = env("SECRET_KEY")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production.")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DJANGO_ENV=production.")
else:
    SECRET_KEY = env("SECRET_KEY", "dev-insecure-key-change-me-0123456789-abcdefghijklmnopqrstuvwxyz")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "channels",
    "strawberry_django",
    "backend.core",
    "backend.users",
    "backend.documents",
    "backend.chats",
    "backend.recipes",
    "backend.quotas",
    "axes",
    "backend.graphiql",
]

MIDDLEWARE = [
    "backend.core.logs.RequestIdMiddleware",  # X-Request-ID, bound for the request's logs (async)
    "backend.core.concurrency.ConcurrencyLimitMiddleware",  # HTTP_MAX_CONCURRENCY requests at once (async)
    # Everything below runs as one synchronous group: a single thread hop per request instead of
    # one per middleware and direction (backend/core/middleware.py has the figures).
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "backend.core.auth.BearerTokenMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # the admin's login page answers a lockout with 429
]

ROOT_URLCONF = "backend.urls"
ASGI_APPLICATION = "backend.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 1)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 8)
DB_POOL_TIMEOUT = float(env("DB_POOL_TIMEOUT", "5"))
# PostgreSQL: parameters bound by the server and statements a connection runs again and again
# prepared after DB_PREPARE_THRESHOLD runs (psycopg's own mechanism), so PostgreSQL parses and
# plans them once: a search's four queries each 0.3-0.5 ms faster (bench/README.md). 0 turns it
# off (Django's default: parameters bound in the client), e.g. behind a pooler in transaction mode
# that does not keep prepared statements.
DB_PREPARE_THRESHOLD = env_int("DB_PREPARE_THRESHOLD", 5)
# Requests of one process that run at once (0: no limit); the rest queue for up to
# HTTP_QUEUE_TIMEOUT s, then get 503 (backend/core/concurrency.py). Default: the pool's size.
HTTP_MAX_CONCURRENCY = env_int("HTTP_MAX_CONCURRENCY", DB_POOL_MAX_SIZE if env("DATABASE_URL") else 0)
HTTP_QUEUE_TIMEOUT = float(env("HTTP_QUEUE_TIMEOUT", "30"))
# Threads that ran a request's sync code are kept for the next request, up to this many idle ones
# (backend/core/handler.py); each keeps its SQLite connection (CONN_MAX_AGE) while it waits.
REQUEST_THREADS_KEEP = env_int("REQUEST_THREADS_KEEP", 32)
# pgvector's HNSW candidate list (hnsw.ef_search): "auto" grows it with the table, from 40 at up to
# 100,000 chunks to 150 at 1,000,000 (backend/documents/engines/pgvector.py), or a fixed number.
PGVECTOR_EF_SEARCH = env("PGVECTOR_EF_SEARCH", "auto")
if PGVECTOR_EF_SEARCH != "auto":
    PGVECTOR_EF_SEARCH = int(PGVECTOR_EF_SEARCH)
if env("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL"))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX_SIZE > 0:
        # Django runs each request's sync code on a new thread: persistent per-thread connections
        # pile up until PostgreSQL refuses more, and a new connection per request costs ~10 ms.
        # One psycopg pool per process bounds and reuses them; a request that waits longer than
        # DB_POOL_TIMEOUT for one gets HTTP 503 (backend.core.unavailable), never a 500.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE), "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT, "max_idle": 300}
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 0)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_PREPARE_THRESHOLD > 0:
        DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True,
                                                              prepare_threshold=DB_PREPARE_THRESHOLD)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # pgvector's HNSW search for every session: an iterative scan that goes on until enough
        # rows pass a query's filters, and a fixed candidate list if one is set (set here: no round
        # trip per search). By default ("auto") the engine sizes the list to the table.
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c hnsw.iterative_scan=relaxed_order" + (
            "" if PGVECTOR_EF_SEARCH == "auto" else f" -c hnsw.ef_search={PGVECTOR_EF_SEARCH}")
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(DATA_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE avoids lock upgrades
                # failing mid-transaction under concurrent writers.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Tests run background tasks on threads: a file, not a shared-cache memory database.
            "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")} if DJANGO_ENV == "test" else {},
            # A connection per thread, kept: opening one (and its PRAGMAs) per operation was a
            # tenth of the server's time when hundreds of answers started together.
            "CONN_MAX_AGE": env_int("CONN_MAX_AGE", 600),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and channel layer ------------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times reads out after 5 s, exactly channels-redis' blocking-pop wait: a
            # quiet subscriber's socket would die. Give reads more room than the pop needs.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -------------------------------------------------------------------------------------
AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 60 * 60 * 3)
EMAIL_VERIFICATION_TIMEOUT = env_int("EMAIL_VERIFICATION_TIMEOUT", 60 * 60 * 24 * 3)
GUEST_TTL_HOURS = env_int("GUEST_TTL_HOURS", 24 * 7)
LOGIN_RATE_LIMIT_PER_ACCOUNT = env_int("LOGIN_RATE_LIMIT_PER_ACCOUNT", 5)
# Failed sign-ins from one address across accounts (credential stuffing): past it, only accounts
# that signed in from that address before may try (an office behind one proxy keeps working).
LOGIN_RATE_LIMIT_PER_ADDRESS = env_int("LOGIN_RATE_LIMIT_PER_ADDRESS", 30)
LOGIN_RATE_LIMIT_WINDOW = env_int("LOGIN_RATE_LIMIT_WINDOW", 15 * 60)
# Login protection (django-axes, for the API's login and the Django admin alike): failures are
# counted per account AND client address, so nobody can lock an owner out of their own account
# from elsewhere; past LOGIN_RATE_LIMIT_PER_ACCOUNT failures that pair waits the window out. The
# counts live in the cache: Redis when configured (every process sees them), else the one embedded
# process's memory (axes warns that a local-memory cache is not shared: here it need not be).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
SILENCED_SYSTEM_CHECKS = [] if REDIS_URL else ["axes.W001"]
AXES_FAILURE_LIMIT = LOGIN_RATE_LIMIT_PER_ACCOUNT
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_RATE_LIMIT_WINDOW)
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_ENABLED = True
AXES_USERNAME_FORM_FIELD = "username"  # the keyword authenticate() receives (it holds the email here)
AVATAR_MAX_BYTES = env_int("AVATAR_MAX_BYTES", 2 * 1024 * 1024)
AVATAR_MAX_PIXELS = env_int("AVATAR_MAX_PIXELS", 25_000_000)  # checked from the header, before decoding
AVATAR_SIZE = env_int("AVATAR_SIZE", 256)
# Address of the frontend, used to build links in emails (password reset, verification).
FRONTEND_URL = env("FRONTEND_URL", "http://localhost:3000")
# The API's public origin (https://api.example.com) for the absolute URLs it returns (downloads,
# avatars); empty: the origin each request reached.
PUBLIC_URL = env("PUBLIC_URL", "")

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 24 * 14)
SESSION_COOKIE_SAMESITE = env("SESSION_COOKIE_SAMESITE", "Lax")
CSRF_COOKIE_SAMESITE = env("CSRF_COOKIE_SAMESITE", "Lax")

# --- CORS (a Next.js frontend on another origin) ----------------------------------------------
# In development the Next.js dev server (port 3000) is allowed; production lists its origins.
CORS_ALLOWED_ORIGINS = env_list(
    "CORS_ALLOWED_ORIGINS", "" if PRODUCTION else "http://localhost:3000,http://127.0.0.1:3000")
# Pages on these origins may open the GraphQL websocket (same-origin pages always may).
WEBSOCKET_ALLOWED_ORIGINS = env_list("WEBSOCKET_ALLOWED_ORIGINS", ",".join(CORS_ALLOWED_ORIGINS))
CORS_ALLOW_CREDENTIALS = True  # cookies, for the listed origins only
# Mutations from those origins carry the CSRF token: the page cannot read this host's cookie, so
# every /graphql/ response also carries the token in an X-CSRFToken header it may read.
CORS_EXPOSE_HEADERS = ["X-CSRFToken"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", ",".join(CORS_ALLOWED_ORIGINS))
CORS_URLS_REGEX = r"^/(graphql|media|documents)/.*$"

# --- Email ------------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "no-reply@localhost")
if env("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# --- Files ------------------------------------------------------------------------------------
MEDIA_ROOT = env("MEDIA_ROOT", str(DATA_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = env("STATIC_ROOT", str(DATA_DIR / "static"))
STORAGE_BACKEND = env("STORAGE_BACKEND", "local")  # local | s3
if STORAGE_BACKEND == "s3":
    default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env("AWS_S3_REGION_NAME") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Static files (GraphiQL's assets, the admin's) are served by WhiteNoise from the app folders in
# development and from STATIC_ROOT (``collectstatic``) in production.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
FILE_UPLOAD_TEMP_DIR = None
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Documents and background work -----------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
# A task is acknowledged when it finishes; a message whose worker died unacknowledged is
# redelivered after this long (Redis broker). Longer than the longest ingestion, or a slow one
# would run twice; the ingestion sweep below finds a dead worker's documents much sooner.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
TASK_WORKERS = env_int("TASK_WORKERS", 2)
# Resume documents left PENDING or PROCESSING when the server starts (embedded runner only).
INGEST_RESUME_ON_START = env_bool("INGEST_RESUME_ON_START", DJANGO_ENV != "test")
# Ingestion leases (backend/documents/recovery.py): a running task touches its document every
# INGEST_HEARTBEAT s; web processes sweep every INGEST_SWEEP_INTERVAL s (0: off) and requeue a
# PROCESSING document silent for INGEST_STALE_AFTER s (a PENDING one after
# INGEST_PENDING_STALE_AFTER s), or fail it INTERRUPTED after INGEST_MAX_ATTEMPTS runs.
INGEST_HEARTBEAT = float(env("INGEST_HEARTBEAT", "10"))
INGEST_SWEEP_INTERVAL = float(env("INGEST_SWEEP_INTERVAL", "0" if DJANGO_ENV == "test" else "30"))
INGEST_STALE_AFTER = env_int("INGEST_STALE_AFTER", 60)
INGEST_PENDING_STALE_AFTER = env_int("INGEST_PENDING_STALE_AFTER", 300)
INGEST_MAX_ATTEMPTS = env_int("INGEST_MAX_ATTEMPTS", 3)
# A run's stage and progress reach subscribers at once; its row is written at most this often (s).
INGEST_PROGRESS_WRITE_INTERVAL = float(env("INGEST_PROGRESS_WRITE_INTERVAL", "1"))
DOCUMENT_MAX_BYTES = env_int("DOCUMENT_MAX_BYTES", 25 * 1024 * 1024)
DOCUMENT_MAX_PAGES = env_int("DOCUMENT_MAX_PAGES", 2000)
DOCUMENT_MAX_CHARS = env_int("DOCUMENT_MAX_CHARS", 5_000_000)
DOCUMENT_PARSE_TIMEOUT = float(env("DOCUMENT_PARSE_TIMEOUT", "120"))
DOCUMENT_PARSE_MEMORY_MB = env_int("DOCUMENT_PARSE_MEMORY_MB", 2048)  # address space of the extraction process
# OCR (Tesseract) of images and of PDF pages without a text layer; off by itself where Tesseract or
# the languages' data is missing (/healthz says why).
OCR_ENABLED = env_bool("OCR_ENABLED", True)
OCR_LANGUAGES = env("OCR_LANGUAGES", "eng")  # Tesseract codes joined with "+": eng+deu
OCR_MAX_PAGES = env_int("OCR_MAX_PAGES", 50)  # pages one document may have read by OCR
OCR_PAGE_TIMEOUT = float(env("OCR_PAGE_TIMEOUT", "30"))  # seconds per page
OCR_TIME_BUDGET = float(env("OCR_TIME_BUDGET", "300"))  # seconds of OCR per document, beyond the parse timeout
OCR_DPI = env_int("OCR_DPI", 200)
OCR_WORKERS = env_int("OCR_WORKERS", 0)  # a scan's pages read side by side in this many processes; 0: one per core
KB_ARCHIVE_MAX_BYTES = env_int("KB_ARCHIVE_MAX_BYTES", 512 * 1024 * 1024)  # a knowledge-base archive, inflated
IMPORT_STALE_AFTER = env_int("IMPORT_STALE_AFTER", 600)  # s: an import (collection, chat) silent this long stopped; removed
CHUNK_SIZE = env_int("CHUNK_SIZE", 1000)
CHUNK_OVERLAP = env_int("CHUNK_OVERLAP", 150)
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 16)
# Documents: onnx-int8 (the packaged model exported locally, fused and quantized, run by
# onnxruntime: the fastest here), onnx (same, fp32) or torch (sentence-transformers).
# Queries: onnx-int8, onnx or torch; empty: the documents' graph (torch documents: fp32 ONNX queries,
# the same vectors with a third of the latency).
EMBEDDING_BACKEND = env("EMBEDDING_BACKEND", "onnx-int8")
QUERY_EMBEDDING_BACKEND = env("QUERY_EMBEDDING_BACKEND", "")
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0)  # encoder runs side by side, one core each; 0: one per core
QUERY_EMBEDDING_THREADS = env_int("QUERY_EMBEDDING_THREADS", 1)  # threads of one query's run (0: one per core)
# The query encoder loaded as a web process starts, beside its first requests, not inside its first
# search (0.7 s on the 2-core machine; 4.4 s while the tokenizer came through transformers and torch).
WARM_QUERY_ENCODER = env_bool("WARM_QUERY_ENCODER", DJANGO_ENV != "test")
# Where the ONNX exports are made, once per model and onnxruntime version (default ~/.cache/chat-backend/models).
MODEL_CACHE_DIR = env("MODEL_CACHE_DIR", "")
INDEX_DIR = env("INDEX_DIR", "")  # default: DATA_DIR/indexes (FAISS files, a cache of the database)
# Where chunk vectors are searched: pgvector (in PostgreSQL, shared by every process), faiss
# (index files beside each process), or auto: pgvector when the database has the extension.
VECTOR_BACKEND = env("VECTOR_BACKEND", "auto")
FAISS_HNSW_MIN_VECTORS = env_int("FAISS_HNSW_MIN_VECTORS", 20_000)  # exact search below, an HNSW graph above
PGVECTOR_EXACT_BELOW = env_int("PGVECTOR_EXACT_BELOW", 500)  # a search's collections this small: no HNSW walk
FAISS_EF_SEARCH = env_int("FAISS_EF_SEARCH", 96)
# Keyword search reads the postings of the rarest query terms up to this many chunks (and more
# only when needed for an exact top k).
KEYWORD_CANDIDATE_BUDGET = env_int("KEYWORD_CANDIDATE_BUDGET", 5000)

# --- Models and providers -------------------------------------------------------------------
OPENAI_API_KEY = env("OPENAI_API_KEY")
OPENAI_BASE_URL = env("OPENAI_BASE_URL")  # an OpenAI-compatible server (Ollama, vLLM, ...)
CLOUDFLARE_ACCOUNT_ID = env("CLOUDFLARE_ACCOUNT_ID")
CLOUDFLARE_API_TOKEN = env("CLOUDFLARE_API_TOKEN")
CLOUDFLARE_API_BASE_URL = env("CLOUDFLARE_API_BASE_URL")
# Who writes RAG answers by default (a user's preference or a chat's setting comes first): "auto"
# (the user's default model, else the first language model available to them, else extractive),
# "extractive" (quotes from the passages, no key), or one of llama-3, gpt-3.5-turbo, gpt-4.
RAG_GENERATOR = env("RAG_GENERATOR", "auto")
RAG_NO_ANSWER_TEXT = env("RAG_NO_ANSWER_TEXT", "I could not find anything about this in your documents.")
# Seconds to wait for a provider to connect and for each part of its answer (PROVIDER_TIMEOUT).
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 60.0)
# An answer being written is saved every half second and touched every 10 s while its process
# lives; one STREAMING with no sign of life for STREAM_STALE_AFTER s lost its process and becomes
# INTERRUPTED with its text so far (web processes look every STREAM_SWEEP_INTERVAL s, 0: off;
# a process that is the only one, without REDIS_URL, finishes them all as it starts).
STREAM_STALE_AFTER = env_int("STREAM_STALE_AFTER", 60)
# Threads of a process for database work started from async code (turn start-ups, saves).
DB_THREADS = env_int("DB_THREADS", 8)
# Token events per second a process sends in all (backend/chats/generation.py): with few
# listeners every token is an event; with hundreds, each event carries several tokens.
STREAM_EVENTS_PER_SECOND = env_int("STREAM_EVENTS_PER_SECOND", 2000)
STREAM_RECOVER_ON_START = env_bool("STREAM_RECOVER_ON_START", DJANGO_ENV != "test")
STREAM_SWEEP_INTERVAL = float(env("STREAM_SWEEP_INTERVAL", "0" if DJANGO_ENV == "test" else "30"))

# --- Quotas (per user; per-user overrides in the admin) and throttles ------------------------
# Token quotas count the tokens of answers written with the server's keys, per model and UTC day;
# 0 in a variable means unlimited. Guests get the GUEST_ figures.
QUOTAS_ENABLED = env_bool("QUOTAS_ENABLED", True)


def _quotas(prefix: str, tokens: dict, turns: int, documents: int, stored_mib: int) -> dict:
    def limit(name, default):
        return env_int(f"{prefix}{name}", default) or None
    return {"tokens_per_day": {model: limit(f"TOKENS_PER_DAY_{model.upper().replace('-', '_').replace('.', '_')}",
                                            value) for model, value in tokens.items()},
            "turns_per_minute": limit("TURNS_PER_MINUTE", turns), "documents": limit("DOCUMENTS", documents),
            "stored_bytes": (limit("STORED_MIB", stored_mib) or 0) * 1024 * 1024 or None}


QUOTAS = _quotas("QUOTA_", {"llama-3": 500_000, "gpt-3.5-turbo": 500_000, "gpt-4": 100_000}, 20, 1000, 2048)
GUEST_QUOTAS = _quotas("GUEST_QUOTA_", {"llama-3": 50_000, "gpt-3.5-turbo": 50_000, "gpt-4": 10_000}, 5, 20, 50)
# Throttles: "<count>/<period>" (s, m, h, d) per client address, per account or per email address,
# counted in the cache (Redis when configured, so they hold across processes). THROTTLES_ENABLED=0
# turns them off (benchmarks).
THROTTLES_ENABLED = env_bool("THROTTLES_ENABLED", True)
THROTTLES = {
    "register": env("THROTTLE_REGISTER", "10/h"),  # per address
    "guest": env("THROTTLE_GUEST", "20/h"),  # guest sessions per address
    "reset-mail-address": env("THROTTLE_RESET_MAIL_ADDRESS", "10/h"),  # reset mails asked per client address
    "reset-mail-email": env("THROTTLE_RESET_MAIL_EMAIL", "3/h"),  # reset mails per email address
    "verify-mail": env("THROTTLE_VERIFY_MAIL", "5/h"),  # verification mails per account (its email)
    "verify-mail-address": env("THROTTLE_VERIFY_MAIL_ADDRESS", "20/h"),  # ... per client address
    "upload": env("THROTTLE_UPLOAD", "60/m"),  # per account
    "search": env("THROTTLE_SEARCH", "120/m"),  # per account
    "turn": env("THROTTLE_TURN", "30/m"),  # chatStream starts per account
}

# Prometheus metrics at /metrics: open outside production; in production only with
# "Authorization: Bearer <METRICS_TOKEN>" (404 when unset).
METRICS_TOKEN = env("METRICS_TOKEN")

# --- GraphQL ----------------------------------------------------------------------------------
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 12)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 30)
GRAPHQL_MAX_TOKENS = env_int("GRAPHQL_MAX_TOKENS", 2000)
# The largest cost of one operation (backend/schema/cost.py: a search costs 50, four times that
# as MULTI_QUERY; a page of N items multiplies what is asked inside it by N).
GRAPHQL_MAX_COST = env_int("GRAPHQL_MAX_COST", 1000)
GRAPHQL_INTROSPECTION = env_bool("GRAPHQL_INTROSPECTION", not PRODUCTION)
# The app's own operations (persisted-documents.json from graphql-codegen, `npm run codegen` in
# client/): found by hash without their text. With GRAPHQL_TRUSTED_DOCUMENTS_ONLY, the only ones run.
GRAPHQL_PERSISTED_DOCUMENTS = env("GRAPHQL_PERSISTED_DOCUMENTS", "")
GRAPHQL_TRUSTED_DOCUMENTS_ONLY = env_bool("GRAPHQL_TRUSTED_DOCUMENTS_ONLY", False)
if GRAPHQL_TRUSTED_DOCUMENTS_ONLY and not GRAPHQL_PERSISTED_DOCUMENTS:
    raise ImproperlyConfigured("GRAPHQL_TRUSTED_DOCUMENTS_ONLY needs GRAPHQL_PERSISTED_DOCUMENTS: the path of the "
                               "persisted-documents.json generated from operations/ (cd client && npm run codegen).")
GRAPHIQL = env_bool("GRAPHIQL", not PRODUCTION)
STRAWBERRY_DJANGO = {
    "MUTATIONS_DEFAULT_HANDLE_ERRORS": True,
    "FIELD_DESCRIPTION_FROM_HELP_TEXT": True,
    "TYPE_DESCRIPTION_FROM_MODEL_DOCSTRING": False,
}

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) --------------------------------------------------------------------
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Behind a TLS-terminating proxy (X-Forwarded-Proto), plain HTTP is redirected to HTTPS.
    # Without one (the compose file's default) the process answers plain HTTP itself.
    BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    if BEHIND_TLS_PROXY:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Probes of orchestrators and load balancers speak plain HTTP to the process itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$"]
X_FRAME_OPTIONS = "DENY"

# Logs (backend/core/logs.py): structlog renders every record, with the request, socket and
# operation ids bound for its work and sensitive values redacted; JSON lines in production.
from backend.core import logs as _logs  # noqa: E402

LOG_FORMAT = env("LOG_FORMAT", "json" if PRODUCTION else "console")  # json | console
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": _logs.formatter(LOG_FORMAT)},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
_logs.configure_structlog()

# Errors to Sentry when SENTRY_DSN is set, scrubbed like the logs (no default PII).
SENTRY_DSN = env("SENTRY_DSN")
if SENTRY_DSN:
    _logs.init_sentry(SENTRY_DSN, environment=DJANGO_ENV,
                      traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0))
