"""VR-LwF — Learning without Forgetting via Replayed Vocabulary (Ding et al. 2022, arXiv 2207.09248).

No code was released by the authors; this is a reference implementation. Defaults reproduce the
re-implementation every published "LwF-VR" number comes from (ZSCL, §1.3 of the notes): K = 1,000
pseudo-sentences of L = 10 uniformly random BPE ids, fixed for the task, distilled in both
directions at T = 2 with T² scaling, student logits against the teacher's text embeddings,
teacher = previous-task model. The choices the paper leaves open are options (§1.5):
vocabulary source, K, L, resampling per task or per step, directions, student text side, T,
weights, teacher. Unlike ZSCL, special tokens (start/end of text) are never sampled (P3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cliplab.methods.base import TaskContext
from cliplab.methods.distill import DistillationMethod, DistillOptions

VOCAB_SOURCES = ("random_bpe", "word_list", "captions")


@dataclass
class VRLwFOptions(DistillOptions):
    vocab_source: str = "random_bpe"  # random_bpe [ZSCL] | word_list (whole words of the BPE vocabulary) | captions (scenario reference captions)
    vocab_size: int = 1000  # K [ZSCL]
    sentence_length: int = 10  # L, tokens (or words) per pseudo-sentence [ZSCL]
    resample: str = "task"  # task [ZSCL] | step

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_source not in VOCAB_SOURCES:
            raise ValueError(f"vocab_source must be one of {VOCAB_SOURCES}, got {self.vocab_source!r}")
        if self.resample not in ("task", "step"):
            raise ValueError(f"resample must be 'task' or 'step', got {self.resample!r}")
        if self.vocab_size < 1 or self.sentence_length < 1:
            raise ValueError("vocab_size and sentence_length must be >= 1")


def special_token_ids(tokenizer) -> tuple[int, int]:
    """(start-of-text, end-of-text) ids of an open_clip SimpleTokenizer-like tokenizer."""
    sot = getattr(tokenizer, "sot_token_id", None)
    eot = getattr(tokenizer, "eot_token_id", None)
    if sot is None or eot is None:
        encoder = tokenizer.encoder
        sot, eot = encoder["<start_of_text>"], encoder["<end_of_text>"]
    return int(sot), int(eot)


def random_bpe_vocabulary(tokenizer, k: int, length: int, context_length: int, generator: torch.Generator) -> Tensor:
    """K rows [SOT, L random BPE ids, EOT, 0-padding]; ids are drawn from every non-special id."""
    if length + 2 > context_length:
        raise ValueError(f"sentence_length {length} + 2 special tokens exceeds the context length {context_length}")
    sot, eot = special_token_ids(tokenizer)
    allowed = torch.tensor([i for i in range(len(tokenizer.encoder)) if i not in (sot, eot)])
    ids = allowed[torch.randint(len(allowed), (k, length), generator=generator)]
    rows = torch.zeros(k, context_length, dtype=torch.long)
    rows[:, 0], rows[:, 1 : length + 1], rows[:, length + 1] = sot, ids, eot
    return rows


def word_list_vocabulary(tokenizer, k: int, length: int, generator: torch.Generator) -> Tensor:
    """K sentences of L random whole words of the tokenizer's vocabulary, tokenised normally."""
    # ASCII only: the byte-level BPE vocabulary spells non-ASCII bytes as Latin-1-looking letters
    # ("ðŁĺ" ...), which str.isalpha() accepts although they are byte fragments, not words.
    words = sorted(
        {
            w[:-4]
            for w in tokenizer.encoder
            if w.endswith("</w>") and w[:-4].isascii() and w[:-4].isalpha() and len(w) > 6
        }
    )
    pick = torch.randint(len(words), (k, length), generator=generator)
    return tokenizer([" ".join(words[i] for i in row) for row in pick.tolist()])


class VRLwF(DistillationMethod):
    """LwF whose distillation 'classes' are a replayed vocabulary of pseudo-sentences."""

    name = "vr_lwf"
    Options = VRLwFOptions

    @property
    def texts_per_step(self) -> bool:  # type: ignore[override]
        return self.options.resample == "step"

    def distill_tokens(self, ctx: TaskContext, step: int) -> Tensor:
        generator = torch.Generator().manual_seed(ctx.seed * 7_919 + (step if self.options.resample == "step" else 0))
        o = self.options
        if o.vocab_source == "random_bpe":
            context = ctx.model.context_length if hasattr(ctx.model, "context_length") else ctx.class_tokens.shape[1]
            return random_bpe_vocabulary(ctx.tokenizer, o.vocab_size, o.sentence_length, context, generator)
        if o.vocab_source == "word_list":
            return word_list_vocabulary(ctx.tokenizer, o.vocab_size, o.sentence_length, generator)
        if ctx.scenario.reference is None:
            raise ValueError(f"vocab_source=captions needs reference captions; scenario {ctx.scenario.name!r} has none")
        captions = ctx.scenario.reference.captions
        pick = torch.randint(len(captions), (o.vocab_size,), generator=generator)
        return ctx.tokenizer([captions[i] for i in pick.tolist()])
