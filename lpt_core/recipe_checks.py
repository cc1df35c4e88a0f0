"""What a recipe promises that can be checked before a run, without a GPU and without the data read.

A paper-scale run starts on a GPU that is lent for minutes; a wrong path, a writer without a chat
template, or prompts that cannot fit its window would otherwise surface only once the models are
loaded there. `check_recipe` looks at what the recipe names: the data files exist (of the kind the
source reads), each model resolves to a local folder, the writer's chat template renders the
recipe's messages, and the prompt and generation lengths fit the writer's context and the recipe's
own limits. Only tokenizers and configs are read, plus the encoder on the CPU for its window.

Every problem names the recipe field it is about; `lpt check-recipe RECIPE` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpt_core.config import PACKAGED_MODELS, Recipe
from lpt_core.paths import resolve_repo_path
from lpt_core.sources import data_source
from lpt_core.training.variants import VARIANTS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The shortest history item a source can give: a one-letter title, no rating, no review. If the
# prompt's fixed part and history_len of these exceed data.max_prompt_tokens, every user is dropped.
_SHORTEST_TITLE = "A"


@dataclass(frozen=True)
class Problem:
    """One thing the recipe gets wrong: the recipe field (dotted) and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class RecipeCheck:
    """What was checked (`facts`, one line each, for a person to read), what would run but is
    probably not what was meant (`warnings`), and what fails (`problems`)."""

    recipe: str
    facts: tuple[str, ...]
    warnings: tuple[Problem, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_text(self) -> str:
        lines = [f"recipe {self.recipe}:", *(f"  ok: {fact}" for fact in self.facts)]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  PROBLEM {problem}" for problem in self.problems]
        lines.append("all checks passed" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


class _Findings:
    """Collects facts and problems while the checks run."""

    def __init__(self) -> None:
        self.facts: list[str] = []
        self.warnings: list[Problem] = []
        self.problems: list[Problem] = []

    def fact(self, line: str) -> None:
        self.facts.append(line)

    def warning(self, field: str, message: str) -> None:
        self.warnings.append(Problem(field, message))

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))


def check_recipe(recipe: Recipe, read_data: bool = False) -> RecipeCheck:
    """Check everything about `recipe` that needs neither a GPU nor reading the data (see above).

    `read_data` also reads, cleans and splits the data as the pipeline does and measures every
    example's prompt against data.max_prompt_tokens (minutes on a full Amazon dump)."""
    found = _Findings()
    _check_data_files(recipe, found)
    writer = _local_model("models.generator", recipe.models.generator, found)
    encoder = _local_model("models.encoder", recipe.models.encoder, found)
    judge = _local_model("quality.judge", recipe.quality.judge, found)
    writer_tokenizer = _check_writer(recipe, writer, found) if writer is not None else None
    if judge is not None:
        _check_chat_template("quality.judge", recipe.quality.judge, found)
    if encoder is not None:
        _check_encoder_window(recipe, found)
    data_found = not any(problem.field.startswith("data.") for problem in found.problems)
    if read_data and data_found and writer_tokenizer is not None and encoder is not None:
        _check_prompts_on_data(recipe, writer_tokenizer, found)
    return RecipeCheck(recipe.name, tuple(found.facts), tuple(found.warnings), tuple(found.problems))


def _check_data_files(recipe: Recipe, found: _Findings) -> None:
    # Paths resolve as the readers resolve them (lpt_core.data.readers.read_raw).
    source = data_source(recipe.data.source)
    wanted = [("data.path", recipe.data.path, source.path_is_folder)]
    if recipe.data.items_path is not None:
        wanted.append(("data.items_path", recipe.data.items_path, False))
    for field, value, is_folder in wanted:
        path = resolve_repo_path(value)
        kind = "folder" if is_folder else "file"
        if (path.is_dir() if is_folder else path.is_file()):
            found.fact(f"{field}: {kind} {path} exists")
        else:
            state = "is not a folder" if is_folder and path.exists() else (
                "is a folder, not a file" if path.is_dir() else "does not exist")
            found.problem(field, f"{path} {state} (data.source {recipe.data.source} reads a {kind} here)")


def _local_model(field: str, name: str, found: _Findings) -> Path | None:
    """The local folder `name` resolves to, or None after recording why it does not. A hub id is
    not downloaded here: a run on a machine without the network (a lent GPU) could not either."""
    from lpt_core.models import ModelError, resolve_model

    local = name in PACKAGED_MODELS or Path(name).expanduser().exists() or resolve_repo_path(name).exists()
    if not local:
        found.problem(field, f"{name!r} is not on this machine (no such folder or .gguf file; relative "
                             f"paths are from {resolve_repo_path('.')}); put the model there or name its folder")
        return None
    try:
        folder = resolve_model(name)
    except ModelError as exc:
        found.problem(field, str(exc))
        return None
    found.fact(f"{field}: {name} -> {folder}")
    return folder


def _check_writer(recipe: Recipe, folder: Path, found: _Findings) -> PreTrainedTokenizerBase | None:
    """The writer's chat template renders the recipe's prompt, and the prompt and the profiles fit
    the writer's context and data.max_prompt_tokens. Returns the writer's tokenizer where its
    template takes the recipe's prompt."""
    tokenizer = _check_chat_template("models.generator", recipe.models.generator, found)
    if tokenizer is None:
        return None
    try:
        fixed = _prompt_tokens(recipe, tokenizer, "")
        shortest = _prompt_tokens(recipe, tokenizer, _shortest_history(recipe))
    except _TemplateRefused as refused:
        found.problem(refused.field, refused.message)
        return None
    limit = recipe.data.max_prompt_tokens
    history_len = recipe.split.history_len
    if shortest > limit:
        found.problem(
            "data.max_prompt_tokens",
            f"{limit} tokens cannot hold even the shortest prompt: the chat template, prompt.system and the "
            f"instruction take {fixed} tokens and {history_len} one-word history items bring it to {shortest}; "
            "every user would be dropped (shorten the prompt, lower split.history_len or raise the limit)",
        )
    else:
        per_item = (limit - fixed) // history_len
        found.fact(
            f"prompt: template + system + instruction = {fixed} tokens, shortest {history_len}-item history "
            f"{shortest}; data.max_prompt_tokens {limit} leaves about {per_item} tokens per history item "
            "(users whose prompt is longer are dropped at the split, as in the reference)"
        )
    context = _context_length(folder)
    if context is None:
        found.fact("models.generator: its config names no context length; prompt + profile not checked against it")
        return tokenizer
    lengths = _generation_lengths(recipe)
    for field, new_tokens in lengths.items():
        if limit + new_tokens > context:
            found.problem(field, f"{new_tokens} new tokens after a prompt of up to {limit} (data.max_prompt_tokens) "
                                 f"= {limit + new_tokens}, over the writer's context of {context} tokens")
    longest = max(lengths.values())
    if limit + longest <= context:
        found.fact(f"models.generator: prompt {limit} + profile {longest} tokens fit its context of {context}")
    return tokenizer


def _check_chat_template(field: str, name: str, found: _Findings) -> PreTrainedTokenizerBase | None:
    from lpt_core.models import load_tokenizer

    try:
        tokenizer = load_tokenizer(name)
    except (OSError, ValueError) as exc:  # transformers' errors for missing or unreadable files
        found.problem(field, f"{name!r}: its tokenizer does not load: {exc}")
        return None
    if not getattr(tokenizer, "chat_template", None):
        found.problem(field, f"{name!r} has no chat template (chat_template.jinja or tokenizer_config.json): "
                             "prompts are built with the model's own template, so use an instruction-tuned model")
        return None
    found.fact(f"{field}: chat template present")
    return tokenizer


def _prompt_tokens(recipe: Recipe, tokenizer: Any, history: str) -> int:
    """Tokens of the recipe's chat prompt around `history`; _TemplateRefused when the writer's
    template refuses the messages (Gemma's refuses a system turn)."""
    from lpt_core import text

    try:
        prompt = text.chat_prompt(history, tokenizer, recipe.prompt, recipe.data.source)
    except Exception as exc:  # jinja raises TemplateError, templates raise what they like
        raise _TemplateRefused(recipe, exc) from exc
    return text.token_counts([prompt], tokenizer)[0]


class _TemplateRefused(Exception):
    def __init__(self, recipe: Recipe, cause: Exception) -> None:
        # A system turn is the usual culprit; without one, the template itself is the problem.
        self.field = "prompt.system" if recipe.prompt.system else "models.generator"
        self.message = f"the writer's chat template refuses the prompt's messages: {cause}"
        super().__init__(f"{self.field}: {self.message}")


def _shortest_history(recipe: Recipe) -> str:
    """The history text of split.history_len items with a one-letter title and nothing else, laid
    out as the recipe lays histories out (lpt_core.text.history_texts)."""
    import polars as pl

    from lpt_core import text
    from lpt_core.data import schemas

    ids = [str(n) for n in range(recipe.split.history_len)]
    items = pl.DataFrame(
        [{"item_id": i, "title": _SHORTEST_TITLE, "categories": []} for i in ids], schema=schemas.ITEMS
    )
    example = pl.DataFrame(
        [{"user_id": "u", "history_item_ids": ids, "history_ratings": None, "history_reviews": None}],
        schema={name: schemas.EXAMPLES[name] for name in ("user_id", "history_item_ids", "history_ratings",
                                                           "history_reviews")},
    )
    return text.history_texts(example, items, recipe.prompt.history_format)[0]


def _generation_lengths(recipe: Recipe) -> dict[str, int]:
    """Every profile length the recipe generates with, by field: each follows a prompt of up to
    data.max_prompt_tokens in the writer's context. Training's lengths count where a variant of
    training.variants samples with them (its own overrides applied)."""
    lengths = {"generation.max_new_tokens": recipe.generation.max_new_tokens}
    for name in recipe.training.variants:
        variant = VARIANTS[name]
        if not variant.trains_generator:
            continue
        training = variant.recipe_for(recipe).training
        if training.rl.updates_per_round:
            lengths["training.rl.sampling.max_new_tokens"] = training.rl.sampling.max_new_tokens
        if training.best_of_n.iterations:
            lengths["training.best_of_n.sampling.max_new_tokens"] = training.best_of_n.sampling.max_new_tokens
    return lengths


def _context_length(folder: Path) -> int | None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    config = getattr(config, "text_config", None) or config  # multimodal wrappers keep it inside
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_encoder_window(recipe: Recipe, found: _Findings) -> None:
    """Items the length filter keeps should fit the encoder's window, or the encoder cuts them (a
    warning: with short item texts, as MovieLens', nothing is cut)."""
    from lpt_core.models import load_encoder

    try:
        encoder = load_encoder(recipe.models.encoder, recipe.models.model_copy(update={"device": "cpu"}))
    except (OSError, ValueError) as exc:  # transformers' errors for missing or unreadable files
        found.problem("models.encoder", f"{recipe.models.encoder!r} does not load as a sentence-transformers model: {exc}")
        return
    window = int(encoder.max_seq_length)
    limit = recipe.data.max_item_tokens
    if limit > window:
        found.warning("data.max_item_tokens", f"{limit} is over the encoder's window of {window} tokens "
                                               f"({recipe.models.encoder}): a longer item text is kept and cut")
    else:
        found.fact(f"models.encoder: window {window} tokens >= data.max_item_tokens {limit}")
    longest = max(_generation_lengths(recipe).values())
    if longest > window:
        found.warning("models.encoder", f"profiles of up to {longest} writer tokens can exceed its window of "
                                        f"{window} tokens: it reads only their beginning")


def _check_prompts_on_data(recipe: Recipe, tokenizer: Any, found: _Findings) -> None:
    """Read, clean and split the data as the pipeline's data steps do, and measure every example's
    prompt: a limit that drops every user is a problem, otherwise the spread is reported."""
    from lpt_core import text
    from lpt_core.data.cleaning import clean
    from lpt_core.data.errors import DataError
    from lpt_core.data.readers import read_raw
    from lpt_core.data.splitting import split_users
    from lpt_core.models import load_tokenizer

    try:
        raw = read_raw(recipe.data)
    except DataError as exc:
        items_path = recipe.data.items_path
        named = items_path is not None and Path(exc.path).resolve() == resolve_repo_path(items_path).resolve()
        found.problem("data.items_path" if named else "data.path", str(exc))
        return
    item_tokens = text.item_token_counter(load_tokenizer(recipe.models.encoder))
    interactions, items, _ = clean(raw, recipe.data, item_token_counts=item_tokens)
    examples = split_users(interactions, recipe.split).examples
    if examples.is_empty():
        found.problem("data.path", f"no example is left after cleaning ({recipe.data.k_core}-core) and the split "
                                   f"({recipe.split.history_len} history items and a next new item per user)")
        return
    counts = text.prompt_token_counts(examples, items, tokenizer, recipe.prompt, recipe.data.source)
    limit = recipe.data.max_prompt_tokens
    over = int((counts > limit).sum())
    summary = (f"{examples.height} examples of {examples['user_id'].n_unique()} users; prompt tokens median "
               f"{int(counts.median())}, 95th percentile {int(counts.quantile(0.95))}, max {counts.max()}; "
               f"{over} over data.max_prompt_tokens {limit}")
    if over == len(counts):
        found.problem("data.max_prompt_tokens", f"every example's prompt is over the limit ({summary}): every "
                                                "user would be dropped at the split")
    else:
        found.fact(f"data: {summary} (those are dropped at the split)")
