"""Build a tiny random sentence-transformers encoder in code, so tests never need a hub download.

The folder holds a 2-layer BertModel with random weights, a WordPiece vocabulary made here from
single characters and about a hundred English words, mean pooling and L2 normalisation: the same
module stack as all-MiniLM-L6-v2, so code that works on it works on the real default encoder.
Loading it touches only the local folder, never the hub.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import BertConfig, BertModel, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an and or of to in on for with is was are be it this that user likes loves enjoys "
    "dislikes hates movie movies film films show shows tv series book books title description "
    "category categories price rating review average from out drama comedy action thriller horror "
    "romance documentary animation crime mystery fantasy science fiction war western musical family "
    "adventure children slow fast dark funny sad old new classic modern good bad great best worst "
    "long short story stories character characters plot acting music star stars year years time"
).split()
MAX_SEQ_LENGTH = 64


def _vocabulary() -> list[str]:
    # Single characters and their "##" continuations let WordPiece spell any lowercase word,
    # so no realistic test text falls back to [UNK] wholesale.
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789.,:;!?()$-'/")
    return SPECIAL_TOKENS + characters + [f"##{c}" for c in characters] + sorted(set(WORDS))


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random encoder to `folder`, loadable offline with SentenceTransformer(str(folder))."""
    folder = Path(folder)
    # transformers 5 tokenizers take the vocabulary as a mapping, not a vocab.txt path.
    vocab = {token: index for index, token in enumerate(_vocabulary())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_SEQ_LENGTH)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_SEQ_LENGTH,
    )
    with tempfile.TemporaryDirectory() as scratch:
        BertModel(config).save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        transformer = Transformer(scratch, max_seq_length=MAX_SEQ_LENGTH)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        encoder = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        encoder.save(str(folder))
    return folder
