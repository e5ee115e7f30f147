"""The results store: one SQLite row per finished (or failed) run, written atomically at run end.

Design
------
* Standard-library :mod:`sqlite3`, WAL journal (readers never block the writer, several
  processes may write one file), a busy timeout so concurrent writers wait instead of failing.
* Each run is keyed by :func:`run_key` -- a hash of (dataset, method, params, seed, epochs,
  protocol) -- under a ``UNIQUE`` constraint, so nothing is recorded twice even when two
  processes finish the same run.
* A run is written in one ``BEGIN IMMEDIATE ... COMMIT`` transaction only after it ended: a run
  killed half-way (Ctrl-C, ``kill -9``, power loss) leaves no row and is redone next time.
* A finished row is final. A failed row is replaced when the run is retried (``attempts``
  counts the tries), so a fixed bug does not need a fresh store.

Optuna (``--tune``) keeps its own tables in the same file through SQLAlchemy; ours are
prefixed ``bench_`` so the two never collide.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_runs (
    id INTEGER PRIMARY KEY,
    run_key TEXT NOT NULL UNIQUE,
    suite TEXT,
    dataset TEXT NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    epochs INTEGER,
    protocol TEXT,
    params_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('finished', 'failed')),
    error TEXT,
    resolved_params_json TEXT,
    metrics_json TEXT,
    val_metrics_json TEXT,
    history_json TEXT,
    record_json TEXT,
    fit_seconds REAL,
    run_seconds REAL,
    started_at TEXT,
    finished_at TEXT NOT NULL,
    library_version TEXT,
    git_revision TEXT,
    torch_version TEXT,
    python_version TEXT,
    host TEXT,
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS bench_runs_dataset_method ON bench_runs (dataset, method);
CREATE TABLE IF NOT EXISTS bench_meta (key TEXT PRIMARY KEY, value TEXT);
"""

_COLUMNS = ("run_key", "suite", "dataset", "method", "seed", "epochs", "protocol", "params_json", "status",
            "error", "resolved_params_json", "metrics_json", "val_metrics_json", "history_json",
            "record_json", "fit_seconds", "run_seconds", "started_at", "finished_at", "library_version",
            "git_revision", "torch_version", "python_version", "host", "pid")


def _jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and non-finite floats made JSON-safe (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): the form hashed into run keys."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))


def run_key(dataset: str, method: str, params: Mapping[str, Any] | None, seed: int,
            epochs: int | None, protocol: str | None) -> str:
    """The identity of a run: sha256 of its canonical configuration (hex, 32 characters).

    Two runs with the same key are the same experiment; the store records it once.
    """
    config = {"dataset": dataset, "method": method, "params": dict(params or {}), "seed": int(seed),
              "epochs": None if epochs is None else int(epochs), "protocol": protocol}
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:32]


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git describe --always --dirty`` of the source tree this package runs from, or None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Versions and host recorded with every run."""
    from .. import __version__

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch_version = None
    return {"library_version": __version__, "git_revision": git_revision(), "torch_version": torch_version,
            "python_version": platform.python_version(), "host": socket.gethostname()}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """A results database in one SQLite file.

    Parameters
    ----------
    path : str or Path
        The ``.sqlite`` file; created (with its folder) on first use.
    timeout : float, default 120
        Seconds a writer waits for another process's transaction before giving up.

    Notes
    -----
    A connection is opened per process and thread (on first use), so one store object can be
    handed to worker processes and threads.
    """

    def __init__(self, path: str | Path, timeout: float = 120.0):
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connect()

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO bench_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def __getstate__(self):  # picklable for worker processes: the connection is reopened there
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state):
        self.path, self.timeout = state["path"], state["timeout"]
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ writing
    def record(self, *, key: str, dataset: str, method: str, seed: int, epochs: int | None,
               protocol: str | None, params: Mapping[str, Any], status: str, suite: str | None = None,
               result: Mapping[str, Any] | None = None, error: str | None = None,
               run_seconds: float | None = None, started_at: str | None = None) -> bool:
        """Write one ended run in a single transaction; returns False if it was already finished.

        ``result`` is the record of :func:`beyondmse.experiment.run_experiment` (finished runs);
        ``error`` the error text (failed runs). A finished row is never overwritten; a failed
        row is replaced by the new outcome and its ``attempts`` incremented.
        """
        if status not in ("finished", "failed"):
            raise ValueError(f"status must be 'finished' or 'failed', got {status!r}")
        if status == "finished" and result is None:
            raise ValueError("a finished run needs its result record")
        result = dict(result or {})
        history = result.pop("history", None)
        env = environment()
        row = {
            "run_key": key, "suite": suite, "dataset": dataset, "method": method, "seed": int(seed),
            "epochs": epochs, "protocol": result.get("protocol", protocol),
            "params_json": canonical_json(params), "status": status, "error": error,
            "resolved_params_json": canonical_json(result["params"]) if "params" in result else None,
            "metrics_json": canonical_json(result["metrics"]) if "metrics" in result else None,
            "val_metrics_json": canonical_json(result["val_metrics"]) if "val_metrics" in result else None,
            "history_json": canonical_json(history) if history is not None else None,
            "record_json": canonical_json(result) if result else None,
            "fit_seconds": result.get("fit_seconds"), "run_seconds": run_seconds,
            "started_at": started_at, "finished_at": utc_now(), "pid": os.getpid(), **env,
        }
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(f":{c}" for c in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "run_key")
        sql = (f"INSERT INTO bench_runs ({cols}) VALUES ({marks}) ON CONFLICT (run_key) DO UPDATE SET "
               f"{updates}, attempts = bench_runs.attempts + 1 WHERE bench_runs.status = 'failed'")
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(sql, row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cur.rowcount > 0

    # ------------------------------------------------------------------ reading
    def keys(self, status: str | Iterable[str] = "finished") -> set[str]:
        """Run keys with the given status(es)."""
        statuses = [status] if isinstance(status, str) else list(status)
        marks = ", ".join("?" for _ in statuses)
        rows = self._connect().execute(f"SELECT run_key FROM bench_runs WHERE status IN ({marks})", statuses)
        return {r[0] for r in rows}

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self._connect().execute("SELECT COUNT(*) FROM bench_runs").fetchone()[0]
        return self._connect().execute("SELECT COUNT(*) FROM bench_runs WHERE status = ?", (status,)).fetchone()[0]

    def rows(self, status: str | None = "finished", keys: Iterable[str] | None = None,
             suite: str | None = None) -> list[dict[str, Any]]:
        """Stored runs as dicts shaped like run records (``metrics``, ``params``, ``history``, ...).

        ``params`` is the requested configuration; ``resolved_params`` what the run actually
        used (defaults filled in).
        """
        sql, args = "SELECT * FROM bench_runs WHERE 1=1", []
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if suite is not None:
            sql += " AND suite = ?"
            args.append(suite)
        sql += " ORDER BY id"
        wanted = None if keys is None else set(keys)
        out = []
        for r in self._connect().execute(sql, args):
            if wanted is not None and r["run_key"] not in wanted:
                continue
            rec = {k: r[k] for k in r.keys() if not k.endswith("_json")}
            for k in ("params", "resolved_params", "metrics", "val_metrics", "history"):
                raw = r[f"{k}_json"]
                rec[k] = json.loads(raw) if raw is not None else ({} if k != "history" else None)
            extra = json.loads(r["record_json"]) if r["record_json"] else {}
            rec["sizes"] = extra.get("sizes")
            rec["test_rows_in_train"] = extra.get("test_rows_in_train")
            rec["best_epoch"] = extra.get("best_epoch")
            rec["cap_bound"] = extra.get("cap_bound")
            rec["config"] = extra.get("config")
            rec["tag"] = extra.get("tag")
            rec["head"] = extra.get("head")  # the head's fit_summary (neighbor kept fractions, codec health)
            rec["uncertainty"] = extra.get("uncertainty")  # reliability curve and PIT histogram (issue 19)
            rec["ensemble"] = extra.get("ensemble")  # members of a deep ensemble (params "ensemble")
            rec["epochs_run"] = extra.get("epochs")
            out.append(rec)
        return out

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed (used by tests)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
