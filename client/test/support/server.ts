// Starts the real backend for a test file: daphne on a free port, embedded defaults (SQLite,
// in-memory channel layer, local files, in-process ingestion), a fresh database in a temp folder.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const besideRepo = resolve(repoRoot, "..", "shared", "corpus");
/** The shared corpus of real PDF and DOCX files (beside the checkout, or the workplace's copy). */
export const corpus = process.env.CORPUS_DIR ?? (existsSync(besideRepo) ? besideRepo : "/work/shared/corpus");
/** The frontend's origin in the default development settings (CORS and websocket origin). */
export const frontendOrigin = "http://localhost:3000";

export interface RunningServer {
  base: string;
  url: string;
  dataDir: string;
  output: () => string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => done(port));
    });
  });
}

/** `env`: settings for this server on top of the embedded defaults (a provider's URL, say). */
export async function startServer(extraEnv: Record<string, string> = {}): Promise<RunningServer> {
  const python = process.env.BACKEND_PYTHON ?? join(repoRoot, ".venv", "bin", "python");
  const dataDir = mkdtempSync(join(tmpdir(), "backend-e2e-"));
  const env: NodeJS.ProcessEnv = { ...process.env, DJANGO_ENV: "development", DATA_DIR: dataDir };
  // The embedded defaults, whatever the caller's environment says.
  for (const name of [
    "DATABASE_URL", "SQLITE_PATH", "REDIS_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND", "MEDIA_ROOT",
    "OPENAI_API_KEY", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "RAG_GENERATOR",
    "CORS_ALLOWED_ORIGINS", "CSRF_TRUSTED_ORIGINS", "WEBSOCKET_ALLOWED_ORIGINS", "DJANGO_SETTINGS_MODULE",
  ]) {
    delete env[name];
  }
  Object.assign(env, extraEnv);
  const migrate = spawnSync(python, ["manage.py", "migrate", "--noinput"], { cwd: repoRoot, env, encoding: "utf8" });
  if (migrate.status !== 0) throw new Error(`migrate failed:\n${migrate.stdout}\n${migrate.stderr}`);

  const port = await freePort();
  let log = "";
  const child: ChildProcess = spawn(
    python, ["-m", "backend.serve", "-b", "127.0.0.1", "-p", String(port), "backend.asgi:application"],
    { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout?.on("data", (chunk) => (log += chunk));
  child.stderr?.on("data", (chunk) => (log += chunk));

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daphne exited (${child.exitCode}):\n${log}`);
    try {
      const response = await fetch(`${base}/healthz`);
      if (response.status < 500) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`daphne did not answer /healthz within 60 s:\n${log}`);
    }
    await new Promise((wake) => setTimeout(wake, 200));
  }

  return {
    base,
    url: `${base}/graphql/`,
    dataDir,
    output: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
