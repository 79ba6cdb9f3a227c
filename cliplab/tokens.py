"""Expandable vocabularies: new token ids for a new language's words (CLL-CLIP), and the model side.

CLL-CLIP grows CLIP's vocabulary one language at a time: each language's tokens that the current
tokenizer does not already have get new ids appended after the existing ones, and the token
embedding matrix grows by as many rows (the authors train a BPE per language and merge it into
the current one, old merges first; `projects/cll_clip/scripts/prepare_new_tokenizers.py`,
`clfm/utils/op_tokenizer.py`). `ExpandedTokenizer` does this at the level of whole words, which is
what the merged BPE yields for a language's frequent words: a word the current tokenizer encodes
as one token keeps that token (an English loanword, a word shared with an earlier language: the
lexical overlap of a shared vocabulary), any other word gets a new id.

The ids a tokenizer may use are those below the model's current vocabulary size (`active_rows`,
usually the token embedding's row count): ids of languages not learned yet are not used, so their
words fall back to BPE pieces of the base vocabulary, and one tokenizer serves every point of a run.

The model side: ids above CLIP's end-of-text id break open_clip's default pooling, which takes the
features at the *largest* token id (`text_pool_type='argmax'`). `use_eos_pooling` switches the model
to pooling at the first end-of-text token (open_clip's `'eos'`), which equals argmax pooling on
unexpanded text; `fit_token_embedding` grows a model to the row count of a saved state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn


class ExpandedTokenizer:
    """An open_clip `SimpleTokenizer` with new ids for the words of `languages`, in order.

    `language_words[k]` are the words of the k-th language; its new ids follow those of languages
    0..k-1. Called like the base tokenizer, it returns (N, context_length) token ids.
    """

    def __init__(
        self, base, language_words: Sequence[Iterable[str]], active_rows: Callable[[], int] | None = None
    ) -> None:
        missing = [a for a in ("encode", "bpe", "byte_encoder", "encoder", "pat", "clean_fn") if not hasattr(base, a)]
        if missing:
            raise TypeError(
                f"vocabulary expansion needs open_clip's SimpleTokenizer (CLIP's BPE); {type(base).__name__} "
                f"lacks {missing}"
            )
        self.base, self.active_rows = base, active_rows
        self.vocab_size = base.vocab_size
        self.sot_token_id, self.eot_token_id = base.sot_token_id, base.eot_token_id
        self.context_length = base.context_length
        self.added: dict[str, int] = {}
        self.bounds: list[int] = [self.vocab_size]  # bounds[k] = vocabulary size before language k
        for words in language_words:
            for word in words:
                for token in self._tokens(word):
                    if token not in self.added and len(base.encode(token)) > 1:
                        self.added[token] = self.bounds[0] + len(self.added)
            self.bounds.append(self.bounds[0] + len(self.added))

    def _tokens(self, text: str) -> list[str]:
        return self.base.pat.findall(self.base.clean_fn(text))

    def bind(self, model: nn.Module) -> ExpandedTokenizer:
        """Use the ids below `model`'s current token-embedding size (returns self)."""
        self.active_rows = lambda: model.token_embedding.num_embeddings
        return self

    @property
    def state(self) -> int:
        """The number of usable ids: what the output of a call depends on besides the texts."""
        return self.bounds[-1] if self.active_rows is None else int(self.active_rows())

    def vocab_size_after(self, language: int) -> int:
        """The vocabulary size once languages 0..`language` are learned."""
        return self.bounds[language + 1]

    def new_ids(self, language: int) -> range:
        """The ids language `language` adds."""
        return range(self.bounds[language], self.bounds[language + 1])

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without start/end tokens (the base BPE for every word without an active id)."""
        limit, ids = self.state, []
        for token in self._tokens(text):
            new = self.added.get(token)
            if new is not None and new < limit:
                ids.append(new)
                continue
            word = "".join(self.base.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.base.encoder[piece] for piece in self.base.bpe(word).split(" "))
        return ids

    def token_ids(self, texts: Iterable[str]) -> set[int]:
        """Every id the texts use (start, end and padding excluded)."""
        return {i for text in texts for i in self.encode(text)}

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = context_length or self.context_length
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:  # truncate as open_clip does: the end token stays last
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def __repr__(self) -> str:
        return f"ExpandedTokenizer(base={self.vocab_size}, languages={len(self.bounds) - 1}, added={len(self.added)})"


def use_eos_pooling(model: nn.Module, eos_id: int) -> None:
    """Pool text features at the first `eos_id` token instead of the largest id (open_clip 'eos')."""
    if not hasattr(model, "text_pool_type"):
        raise TypeError(f"{type(model).__name__} has no text_pool_type: only open_clip's CLIP can pool at 'eos'")
    if model.text_pool_type not in ("argmax", "eos"):
        raise ValueError(f"the model pools text with {model.text_pool_type!r}; expanded vocabularies need argmax/eos")
    model.text_pool_type, model.text_eos_id = "eos", int(eos_id)


def fit_token_embedding(model: nn.Module, state: dict[str, torch.Tensor], eos_id: int | None = None) -> None:
    """Grow `model`'s token embedding to the row count of `state` (a saved, expanded model) before
    `load_state_dict` (existing rows kept, new rows zero), and pool at `eos_id` (CLIP's end-of-text
    id by default) when it grew. A state with as many rows or fewer, or rows of another width, is
    left alone."""
    weight = state.get("token_embedding.weight")
    embedding = getattr(model, "token_embedding", None)
    if weight is None or embedding is None or weight.ndim != 2:
        return
    if weight.shape[0] <= embedding.num_embeddings or weight.shape[1] != embedding.embedding_dim:
        return  # nothing to grow (another architecture's file is `load_weights`' error to report)
    old = embedding.weight
    grown = nn.Embedding(weight.shape[0], old.shape[1], device=old.device, dtype=old.dtype)
    with torch.no_grad():  # existing rows kept, new ones zero until the state is loaded
        grown.weight.zero_()
        grown.weight[: old.shape[0]] = old
    grown.weight.requires_grad_(old.requires_grad)
    model.token_embedding = grown
    use_eos_pooling(model, eos_id if eos_id is not None else _CLIP_EOT)


_CLIP_EOT = 49407  # open_clip's SimpleTokenizer end-of-text id

__all__ = ["ExpandedTokenizer", "fit_token_embedding", "use_eos_pooling"]
