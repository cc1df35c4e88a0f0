"""A parquet file of generated profiles, so no profile is ever generated twice for the same input.

A profile's key is a hash of everything it depends on: the prompt, the generator's weights
(`model_id`) and the decoding settings. Changing any of them gives new keys, hence fresh profiles;
changing nothing reuses the stored ones. The file is rewritten atomically after each chunk of new
profiles, so an interrupted run keeps what it finished and the file is never half written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from lpt_core import atomic
from lpt_core.config import GenerationConfig
from lpt_core.generation.base import GeneratedProfile, ProfileGenerator

STORE_SCHEMA = pl.Schema(
    {
        "key": pl.String,
        "model_id": pl.String,
        "decoding": pl.String,  # canonical JSON of the GenerationConfig used
        "text": pl.String,
        "num_tokens": pl.Int32,
        "finished": pl.Boolean,
    }
)
# Prompts generated between two rewrites of the file: large enough that rewriting stays cheap
# and a vLLM engine gets a big batch, small enough that an interruption loses little work.
DEFAULT_CHUNK_SIZE = 256


class ProfileStore:
    """Profiles on disk, keyed by sha256(prompt, model_id, decoding settings)."""

    def __init__(self, path: Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.path = Path(path)
        self.chunk_size = chunk_size

    def get_or_generate(
        self,
        prompts: Sequence[str],
        generator: ProfileGenerator,
        decoding: GenerationConfig,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[GeneratedProfile], int]:
        """Profiles for `prompts` in order, and how many had to be generated now.

        `progress(done, total)` is called after each chunk, counting only new generations.
        """
        decoding_json = _canonical_json(decoding)
        keys = [profile_key(p, generator.model_id, decoding_json) for p in prompts]
        table = self._read()
        known = _profiles_by_key(table)
        missing = _unique_missing(keys, prompts, known)
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            profiles = generator.generate([prompt for _, prompt in chunk])
            rows = []
            for (key, _), profile in zip(chunk, profiles, strict=True):
                known[key] = profile
                rows.append(_row(key, generator.model_id, decoding_json, profile))
            table = self._write(table, rows)
            if progress is not None:
                progress(start + len(chunk), len(missing))
        return [known[key] for key in keys], len(missing)

    def _read(self) -> pl.DataFrame:
        if not self.path.exists():
            return pl.DataFrame(schema=STORE_SCHEMA)
        try:
            table = pl.read_parquet(self.path)
        except Exception as exc:  # polars raises several types for a damaged or foreign file
            raise ValueError(f"{self.path}: not a readable profile store: {exc}") from exc
        if table.schema != STORE_SCHEMA:
            raise ValueError(
                f"{self.path}: columns {dict(table.schema)} differ from the profile store's "
                f"{dict(STORE_SCHEMA)}"
            )
        return table

    def _write(self, table: pl.DataFrame, rows: list[dict]) -> pl.DataFrame:
        updated = pl.concat([table, pl.DataFrame(rows, schema=STORE_SCHEMA)])
        with atomic.atomic_path(self.path) as tmp:
            updated.write_parquet(tmp)
        return updated


def profile_key(prompt: str, model_id: str, decoding_json: str) -> str:
    """sha256 over the prompt, the model id and the canonical decoding JSON, NUL-separated so
    that no two different triples concatenate to the same bytes."""
    payload = "\0".join((prompt, model_id, decoding_json))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# Decoding settings added after stores were first written, with the value that decodes as before:
# left out of the key at that value, so existing stores keep their profiles.
_ADDED_SETTINGS_NEUTRAL = {"repetition_penalty": 1.0, "finish_profiles": False}


def _canonical_json(decoding: GenerationConfig) -> str:
    neutral = {name for name, value in _ADDED_SETTINGS_NEUTRAL.items() if getattr(decoding, name) == value}
    return json.dumps(decoding.model_dump(mode="json", exclude=neutral), sort_keys=True, separators=(",", ":"))


def _profiles_by_key(table: pl.DataFrame) -> dict[str, GeneratedProfile]:
    return {
        row["key"]: GeneratedProfile(row["text"], row["num_tokens"], row["finished"])
        for row in table.iter_rows(named=True)
    }


def _unique_missing(
    keys: list[str], prompts: Sequence[str], known: dict[str, GeneratedProfile]
) -> list[tuple[str, str]]:
    """(key, prompt) pairs still to generate, each key once, in first-seen order."""
    missing: dict[str, str] = {}
    for key, prompt in zip(keys, prompts, strict=True):
        if key not in known and key not in missing:
            missing[key] = prompt
    return list(missing.items())


def _row(key: str, model_id: str, decoding_json: str, profile: GeneratedProfile) -> dict:
    return {
        "key": key,
        "model_id": model_id,
        "decoding": decoding_json,
        "text": profile.text,
        "num_tokens": profile.num_tokens,
        "finished": profile.finished,
    }
