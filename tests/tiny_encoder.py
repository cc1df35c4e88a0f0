"""Build a tiny random sentence-transformers encoder in code, so tests never need a hub download.

The folder holds a 2-layer BertModel with random weights, a WordPiece vocabulary made here from
single characters and about a hundred English words, mean pooling and L2 normalisation: the same
module stack as all-MiniLM-L6-v2, so code that works on it works on the real default encoder.
Loading it touches only the local folder, never the hub.

With `topics`, the weights are set rather than random: a bag-of-topics encoder whose embedding of a
text counts the topic words in it, so that tests can watch a ranking follow the words of a profile.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
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


def build_tiny_encoder(folder: Path, seed: int = 0, topics: Sequence[str] = ()) -> Path:
    """Save a tiny random encoder to `folder`, loadable offline with SentenceTransformer(str(folder)).
    `topics` (words of WORDS) makes it a bag-of-topics encoder instead (count_topics)."""
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
    model = BertModel(config)
    if topics:
        count_topics(model, [vocab[word] for word in topics])
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        transformer = Transformer(scratch, max_seq_length=MAX_SEQ_LENGTH)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        encoder = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        encoder.save(str(folder))
    return folder


def count_topics(model: BertModel, topic_ids: Sequence[int]) -> None:
    """Rewire `model` in place so that its mean-pooled output counts the topic tokens of a text.

    Each topic token's embedding is its own axis, every other token's one shared axis; position
    and segment embeddings are zero. With the attention and feed-forward outputs zeroed, a layer
    hands on its (already normalised) input unchanged, so a text's mean-pooled embedding is the
    share of each topic among its tokens, and two texts are closer the more topics they share.
    """
    if len(topic_ids) >= model.config.hidden_size:
        raise ValueError(f"{len(topic_ids)} topics need more than the {model.config.hidden_size} axes")
    embeddings = model.embeddings
    with torch.no_grad():
        embeddings.word_embeddings.weight.zero_()
        embeddings.word_embeddings.weight[:, 0] = 1.0
        for axis, token_id in enumerate(topic_ids, start=1):
            embeddings.word_embeddings.weight[token_id, 0] = 0.0
            embeddings.word_embeddings.weight[token_id, axis] = 1.0
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        for layer in model.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
