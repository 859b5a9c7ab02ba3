"""Tiny random models built from a config, saved and reloaded through the real loading code.

A word-level tokenizer is built offline from the shipped prompt files, so no hub access is
needed; a ChatML-like chat template exercises the template path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from prompts import data_path

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def _vocab_words() -> list[str]:
    words: set[str] = set()
    for rel in ("sets/everyday.jsonl", "pairs/fear.jsonl"):
        for line in data_path(rel).read_text().splitlines():
            obj = json.loads(line)
            for value in obj.values():
                words.update(re.findall(r"[a-z']+|[.,!?]", str(value).lower()))
    words.update(["system", "user", "assistant", "afraid", "happy", "fear", "terrified"])
    return sorted(words)


def _word_level(words: list[str], splitters: list, chat_template: bool):  # type: ignore[no-untyped-def,type-arg]
    """A lower-casing word-level fast tokenizer over the specials and ``words``, split by
    ``splitters`` (tokenizers pre-tokenizers), with the ChatML-like template if asked."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(splitters)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tokenizer(chat_template: bool = True):  # type: ignore[no-untyped-def]
    from tokenizers import pre_tokenizers

    splitters = [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    return _word_level(_vocab_words(), splitters, chat_template)


def build_model(kind: str = "llama", vocab_size: int = 1000, layers: int = 2, seed: int = 0):  # type: ignore[no-untyped-def]
    import transformers as tf

    torch.manual_seed(seed)
    # A wide init gives the random model peaked, input-dependent logits: with the default
    # 0.02 its logits are nearly flat, the sampling noise decides every token, and neither
    # steering nor prompts could change a text.
    common = {"vocab_size": vocab_size, "initializer_range": 0.5}
    if kind == "llama":
        cfg = tf.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **common,
        )
        return tf.LlamaForCausalLM(cfg)
    if kind == "qwen2":
        cfg = tf.Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **common,
        )
        return tf.Qwen2ForCausalLM(cfg)
    if kind == "mistral":
        cfg = tf.MistralConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **common,
        )
        return tf.MistralForCausalLM(cfg)
    if kind == "gemma":
        cfg = tf.GemmaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
            **common,
        )
        return tf.GemmaForCausalLM(cfg)
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=512, **common)
        return tf.GPT2LMHeadModel(cfg)
    if kind == "gpt_neox":
        cfg = tf.GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=512,
            **common,
        )
        return tf.GPTNeoXForCausalLM(cfg)
    raise ValueError(kind)


def bert_config(tok, **extra):  # type: ignore[no-untyped-def]
    """A 2-layer BERT config over ``tok`` (classifier and sentence-embedding tests);
    ``extra`` adds or overrides fields (``num_hidden_layers``, labels)."""
    import transformers as tf

    fields = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "pad_token_id": tok.pad_token_id,
        "initializer_range": 0.5,
    }
    return tf.BertConfig(**{**fields, **extra})


def save_tiny(path: Path, kind: str = "llama", layers: int = 2, chat_template: bool = True) -> Path:
    """Save a tiny random model and its tokenizer to ``path``; returns the path."""
    tok = build_tokenizer(chat_template)
    model = build_model(kind, vocab_size=len(tok), layers=layers)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_classifier(  # type: ignore[no-untyped-def]
    path: Path,
    kind: str = "bert",
    seed: int = 0,
    layers: int = 2,
    labels=("calm", "fear", "joy"),
    problem_type: str | None = None,
) -> Path:
    """Save a tiny random sequence classifier (``kind`` "bert" or "distilbert") over the
    word-level tokenizer; ``labels`` name its classes in order."""
    import transformers as tf

    tok = build_tokenizer(chat_template=False)
    names = list(labels)
    fields = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    torch.manual_seed(seed)
    if kind == "bert":
        cfg = bert_config(
            tok,
            num_labels=len(names),
            num_hidden_layers=layers,
            problem_type=problem_type,
            **fields,
        )
        model = tf.BertForSequenceClassification(cfg)
    else:
        dcfg = tf.DistilBertConfig(
            vocab_size=len(tok),
            dim=32,
            n_layers=layers,
            n_heads=4,
            hidden_dim=64,
            max_position_embeddings=64,
            pad_token_id=tok.pad_token_id,
            initializer_range=0.5,
            num_labels=len(names),
            problem_type=problem_type,
            **fields,
        )
        model = tf.DistilBertForSequenceClassification(dcfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_tiny_sentence_model(path: Path) -> tuple[Path, Path]:
    """(sentence-transformers folder, plain transformers folder) of one tiny random BERT."""
    import transformers as tf
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    tok = build_tokenizer(chat_template=False)
    torch.manual_seed(1)
    cfg = bert_config(tok)
    raw = path / "raw"
    tf.BertModel(cfg).save_pretrained(raw)
    tok.save_pretrained(raw)
    word = Transformer(str(raw))
    pool = Pooling(cfg.hidden_size, pooling_mode="mean")
    st_dir = path / "st"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(st_dir))
    return st_dir, raw


def digit_tokenizer():  # type: ignore[no-untyped-def]
    """Word-level, with each digit its own token: '42' -> '4', '2' (like Llama 2)."""
    from tokenizers import pre_tokenizers

    words = [*_vocab_words(), "score", ":", *list("0123456789")]
    splitters = [
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(),
    ]
    return _word_level(sorted(set(words)), splitters, chat_template=True)


CLASSIFY_LABELS = ("joy", "neutral", "fear")
TEXTS = [
    "describe your walk to the bakery this morning .",
    "tell me about the room you are sitting in .",
    "what books are on your shelf ?",
    "describe a day at the beach .",
    "i am afraid of the dark .",
    "happy",
    "tell me about a hobby you started recently .",
    "what did you eat for breakfast ?",
    "describe how you do your laundry .",
]
"""Labelled texts over the tiny tokenizer's words, labelled in turn by CLASSIFY_LABELS."""


def write_labelled(path: Path, texts: list[str] = TEXTS) -> Path:
    """A labelled prompt file (id, text, label) of ``texts``."""
    with path.open("w") as fh:
        for i, t in enumerate(texts):
            label = CLASSIFY_LABELS[i % len(CLASSIFY_LABELS)]
            fh.write(json.dumps({"id": f"t{i}", "text": t, "label": label}) + "\n")
    return path
