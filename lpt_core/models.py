"""Model names to local folders, and loading them with a dtype and device that suit the machine.

A model name in a recipe can be a packaged default (fetched by `make setup`), a local Hugging Face
folder, a .gguf file (converted once into a plain safetensors folder, because dequantizing a GGUF
on every load takes seconds and a safetensors reload does not), or a hub id (online only).
Everything is loaded from a local folder with `local_files_only`, so a run never touches the
network behind the user's back, and never with remote code.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lpt_core import atomic, paths
from lpt_core.config import PACKAGED_MODELS, ModelsConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# Weight formats other than safetensors are pickles (arbitrary code on load): never fetched.
_UNSAFE_WEIGHT_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.gguf"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# CPU flags with native bf16 matrix instructions; without them bf16 is emulated and slower.
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


class ModelError(ValueError):
    """A model name that cannot be resolved to a usable local folder; the message says why."""


def resolve_model(name: str) -> Path:
    """Map a model name to a local folder holding a Hugging Face or sentence-transformers model.

    Tried in order: a packaged default name, an existing local folder (as given, then relative to
    the repository root), a .gguf file (converted once into the models cache), a hub id.
    """
    if name in PACKAGED_MODELS:
        return _packaged_default(name)
    for candidate in _local_candidates(name):
        if candidate.is_dir():
            return _checked_model_folder(candidate)
        if candidate.suffix == ".gguf" and candidate.is_file():
            return _converted_gguf(candidate)
    if name.endswith(".gguf"):
        raise ModelError(f"model {name!r}: no such GGUF file")
    if _looks_like_path(name):
        raise ModelError(f"model {name!r}: no such folder")
    return _hub_snapshot(name)


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors folder (model + tokenizer) at `out_dir`.

    transformers loads GGUF through a quantizer object that refuses to save; dropping it and the
    quantization config leaves a plain float model whose weights save as ordinary safetensors.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path}: not found")
    folder, file_name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name, local_files_only=True)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _align_special_tokens(tokenizer, model.config)
    # The GGUF import sets a WordPiece-only clean-up that BPE tokenizers ignore with a warning.
    tokenizer.clean_up_tokenization_spaces = False
    with atomic.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def weights_fingerprint(folder: Path) -> str:
    """Short hash of the CONTENT of a model folder's config and weight files.

    Part of a generator's identity in stored profiles: re-saved or retrained weights under the
    same name get new profiles instead of stale ones, while the same weights fetched again, copied
    or installed elsewhere keep their profiles (a hash of file dates would not). Each file's hash
    is computed once per process and file state (reading a model's weights costs about as much as
    loading it).
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for file in sorted([folder / "config.json", *folder.glob("*.safetensors")]):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}|{_file_digest(file.resolve(), stat.st_size, stat.st_mtime_ns)}\n".encode())
    return digest.hexdigest()[:10]


@functools.lru_cache(maxsize=64)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes; size and mtime only key the cache, so a rewritten file is read again."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def pick_device(requested: str = "auto") -> torch.device:
    """"auto" means CUDA when available, else CPU; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError("models.device is 'cuda' but no CUDA device is available")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """Resolve "auto" to bf16 on CUDA and on CPUs with native bf16 instructions, else float32.

    On a CPU with AMX/AVX512-BF16, SmolLM2 generation measured 157 tokens/s in bf16 vs 60 in fp32;
    on CPUs without them bf16 is emulated and slower than fp32.
    """
    if requested != "auto":
        if requested not in _DTYPES:
            raise ModelError(f"dtype {requested!r}: expected auto, {', '.join(_DTYPES)}")
        return _DTYPES[requested]
    if device.type == "cuda" or (device.type == "cpu" and _cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (generator or encoder folder) without loading its weights."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name), trust_remote_code=False, local_files_only=True)


def load_generator(name: str, cfg: ModelsConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer for batched generation (left padding, a pad token set)."""
    from transformers import AutoModelForCausalLM

    folder = resolve_model(name)
    device = pick_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=pick_dtype(cfg.dtype, device),
        attn_implementation=_generation_attention(device),
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    model.to(device).eval()
    tokenizer = load_tokenizer(name)
    # Decoder-only batches must be left padded so every row's next token follows its last token.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _generation_attention(device: torch.device) -> str | None:
    # On CPU, a decode step with transformers' sdpa attention spends most of its time copying the
    # grouped KV cache (see lpt_core/attention.py); on CUDA the model's default stays.
    if device.type != "cpu":
        return None
    from lpt_core import attention

    return attention.register()


def load_encoder(name: str, cfg: ModelsConfig) -> SentenceTransformer:
    """Load a sentence-transformers text encoder from a local folder, in float32.

    The encoder is fine-tuned with learning rates near 1e-7, and bf16 weights would round such
    updates away, so its weights stay float32 whatever `cfg.dtype` says.
    """
    from sentence_transformers import SentenceTransformer

    folder = resolve_model(name)
    device = pick_device(cfg.device)
    return SentenceTransformer(
        str(folder), device=str(device), trust_remote_code=False, local_files_only=True
    )


def _align_special_tokens(tokenizer: PreTrainedTokenizerBase, config: object) -> None:
    # transformers' GGUF tokenizer import can name the wrong eos (SmolLM2: <|im_start|>, while the
    # GGUF metadata and the model config say <|im_end|>); the model config carries the GGUF's ids.
    for role in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        if token_id is not None and getattr(tokenizer, f"{role}_token_id") != token_id:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))


def _packaged_default(name: str) -> Path:
    folder = paths.models_dir() / name
    if not folder.is_dir():
        raise ModelError(
            f"model {name!r} is a packaged default but {folder} does not exist: run `make setup`"
        )
    return folder


def _local_candidates(name: str) -> list[Path]:
    given = Path(name).expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates.append(paths.resolve_repo_path(given))
    return candidates


def _checked_model_folder(folder: Path) -> Path:
    # config.json: a transformers model; modules.json: a sentence-transformers model.
    if not any((folder / marker).is_file() for marker in ("config.json", "modules.json")):
        raise ModelError(f"model folder {folder}: has neither config.json nor modules.json")
    return folder


def _converted_gguf(gguf_path: Path) -> Path:
    out_dir = paths.models_dir() / f"gguf-{gguf_path.stem}-{_file_identity_hash(gguf_path)}"
    if (out_dir / "config.json").is_file():
        return out_dir
    return convert_gguf(gguf_path, out_dir)


def _file_identity_hash(path: Path) -> str:
    """Short hash of where a file is, its size and modification time: a changed file reconverts.

    Cheaper than hashing the content of a multi-gigabyte checkpoint on every resolve.
    """
    stat = path.stat()
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else path-shaped is a missing local path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _hub_snapshot(name: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise ModelError(
            f"model {name!r} is neither a packaged default ({', '.join(PACKAGED_MODELS)}), "
            "a local folder nor a .gguf file, and HF_HUB_OFFLINE=1 forbids a hub download"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, ignore_patterns=_UNSAFE_WEIGHT_PATTERNS))
    except Exception as exc:  # the hub client raises many unrelated types; all mean "not usable"
        raise ModelError(f"model {name!r}: not found locally and not downloadable: {exc}") from exc


def _cpu_has_native_bf16() -> bool:
    # torch.backends.cpu.get_cpu_capability() reports only the dispatch level ("AVX512") even on
    # AMX machines, so the kernel's CPU flags are the reliable source (Linux; elsewhere fp32).
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    return bool(flags & _CPU_BF16_FLAGS)
