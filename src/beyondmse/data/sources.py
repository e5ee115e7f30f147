"""Where data files are found: ``$BEYONDMSE_DATA``, the user cache, the embedded copy, then
(OpenML only) a download into the user cache, with sha256 checksums verified."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "_embedded"


def user_cache_dir() -> Path:
    """``$BEYONDMSE_CACHE``, else ``$XDG_CACHE_HOME/beyondmse``, else ``~/.cache/beyondmse``."""
    if os.environ.get("BEYONDMSE_CACHE"):
        return Path(os.environ["BEYONDMSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "beyondmse"


def search_dirs() -> list[tuple[str, Path]]:
    """The lookup order, as (label, folder) pairs."""
    dirs = []
    if os.environ.get("BEYONDMSE_DATA"):
        dirs.append(("$BEYONDMSE_DATA", Path(os.environ["BEYONDMSE_DATA"]).expanduser()))
    dirs.append(("user cache", user_cache_dir()))
    dirs.append(("embedded", EMBEDDED_DIR))
    return dirs


def find_data_file(filename: str) -> Path | None:
    """The first existing ``filename`` in :func:`search_dirs`, or None."""
    for _, folder in search_dirs():
        path = folder / filename
        if path.is_file():
            return path
    return None


def where(filename: str) -> str:
    """A human-readable answer to "where would this load from here?"."""
    for label, folder in search_dirs():
        if (folder / filename).is_file():
            return f"{label}: {folder / filename}"
    return f"not found (put {filename} in $BEYONDMSE_DATA)"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    if expected is not None and sha256_of(path) != expected:
        raise ValueError(f"checksum mismatch for {path}: the file is corrupted or a different version "
                         f"(expected sha256 {expected})")


# --------------------------------------------------------------------------- OpenML
def openml_cache_paths(data_id: int, cache_dir: Path | None = None) -> tuple[Path, Path]:
    folder = (cache_dir or user_cache_dir()) / "openml"
    return folder / f"{data_id}.csv.gz", folder / f"{data_id}.json"


def fetch_openml_frame(data_id: int, cache_dir: Path | None = None, download: bool = True):
    """The OpenML dataset ``data_id`` as (DataFrame, metadata dict), cached after the first download.

    The cache holds ``openml/<id>.csv.gz`` and ``openml/<id>.json`` (name, default target, sha256
    of the CSV). A cached file is verified against its recorded sha256; a mismatch raises. The
    download itself goes through scikit-learn's ``fetch_openml``, which verifies OpenML's md5.
    """
    import pandas as pd

    data_path, meta_path = openml_cache_paths(data_id, cache_dir)
    if data_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        verify_sha256(data_path, meta.get("sha256"))
        return pd.read_csv(data_path), meta
    if not download:
        raise ValueError(f"OpenML dataset {data_id} is not in the cache ({data_path}) and downloads are off")
    from sklearn.datasets import fetch_openml

    try:
        bunch = fetch_openml(data_id=data_id, as_frame=True, parser="auto",
                             data_home=str(data_path.parent / "sklearn"))
    except Exception as err:  # network errors come in many types; report them plainly
        raise ValueError(f"could not download OpenML dataset {data_id} (offline?): {err}") from err
    frame = bunch.frame
    data_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
    tmp.replace(data_path)
    target = bunch.target_names[0] if getattr(bunch, "target_names", None) else None
    meta = {"id": data_id, "name": bunch.details.get("name", str(data_id)), "target": target,
            "sha256": sha256_of(data_path)}
    meta_path.write_text(json.dumps(meta, indent=1))
    return frame, meta
