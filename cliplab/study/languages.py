"""What notebook 07 shows about new languages: the captions, their tokens, and the token embeddings.

* `language_examples`: a few images' English captions and their translations, with how many tokens
  each takes under CLIP's BPE and with the language's own ids (CLL-CLIP's expanded vocabulary);
* `token_groups`: the token ids worth telling apart (CLIP's tokens that English captions use, the
  other CLIP tokens, the start/end tokens, each language's new ids);
* `token_embedding_frame`: from a run's task checkpoints, every such row's norm and how far a CLIP
  row moved from the pretrained model, after each task: what TEIR's initialisation and per-row
  regularisation do to the embedding matrix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import torch

from cliplab.checkpoints import load_state_dict
from cliplab.models import TOYCLIP, TOYCLIP_CHECKPOINT
from cliplab.results.layout import RunFolder
from cliplab.tokens import ExpandedTokenizer
from cliplab.toyworld.languages import make_languages
from cliplab.toyworld.parallel import parallel_corpus

ENGLISH = "CLIP tokens of English captions"
OTHER = "other CLIP tokens"
SPECIAL = "start/end tokens"


def _tokenizer(n_languages: int, language_seed: int) -> tuple[ExpandedTokenizer, list]:
    languages = make_languages(n_languages, seed=language_seed)
    return ExpandedTokenizer(open_clip.get_tokenizer(TOYCLIP), [x.words() for x in languages]), languages


def language_examples(n: int = 3, n_languages: int = 4, language_seed: int = 0) -> pd.DataFrame:
    """Parallel test captions of `n` images: one row per (image, language), with token counts."""
    tokenizer, languages = _tokenizer(n_languages, language_seed)
    corpus = parallel_corpus(languages, n, "test", seed=language_seed)
    rows = []
    for i in range(n):
        texts = [("English", corpus.english[i])] + [(x.name, corpus.captions[x.name][i]) for x in languages]
        for name, text in texts:
            rows.append(
                {
                    "image": i,
                    "language": name,
                    "caption": text,
                    "BPE tokens": len(tokenizer.base.encode(text)),
                    "tokens with new ids": len(tokenizer.encode(text)),
                }
            )
    return pd.DataFrame(rows)


def token_groups(n_languages: int = 4, language_seed: int = 0, n_other: int = 2000) -> dict[str, list[int]]:
    """Token ids by group (see the module docstring); `n_other` CLIP tokens no caption uses, drawn at random."""
    tokenizer, languages = _tokenizer(n_languages, language_seed)
    corpus = parallel_corpus(languages, 400, "train", seed=language_seed)
    english = tokenizer.base(corpus.english)
    english_ids = set(english.unique().tolist()) - {0, tokenizer.sot_token_id, tokenizer.eot_token_id}
    language_ids = {i for words in (x.words() for x in languages) for w in words for i in tokenizer.base.encode(w)}
    spare = sorted(set(range(tokenizer.vocab_size)) - english_ids - language_ids - {0, 49406, 49407})
    pick = np.random.default_rng(0).choice(len(spare), size=min(n_other, len(spare)), replace=False)
    groups = {ENGLISH: sorted(english_ids), OTHER: sorted(spare[i] for i in pick), SPECIAL: [49406, 49407]}
    for k, language in enumerate(languages):
        groups[f"new ids: {language.name}"] = list(tokenizer.new_ids(k))
    return groups


def token_embedding_frame(
    run_folder: str | os.PathLike, groups: dict[str, list[int]], tasks: list[str] | None = None
) -> pd.DataFrame:
    """Long table (after, group, token, norm, drift): every grouped row of the token embedding after
    each task of the run in `run_folder`. `drift` is the distance a CLIP row moved from the
    pretrained model (NaN for new rows); `after` is the task name (`pretrained` for ToyCLIP)."""
    pretrained = load_state_dict(TOYCLIP_CHECKPOINT)["token_embedding.weight"].float()
    checkpoints = RunFolder(Path(run_folder)).task_checkpoints()
    if not checkpoints:
        raise FileNotFoundError(f"no task checkpoints in {run_folder} (was it run with keep_checkpoints=all?)")
    names = tasks or [f"task {i + 1}" for i in range(len(checkpoints))]
    states = [("pretrained", pretrained)] + [
        (name, load_state_dict(path)["token_embedding.weight"].float()) for name, path in zip(names, checkpoints)
    ]
    frames = []
    for after, weight in states:
        for group, ids in groups.items():
            ids = [i for i in ids if i < weight.shape[0]]
            if not ids:
                continue
            rows = weight[ids]
            drift = torch.full((len(ids),), float("nan"))
            old = torch.tensor([i < pretrained.shape[0] for i in ids])
            if old.any():
                drift[old] = (rows[old] - pretrained[torch.tensor(ids)[old]]).norm(dim=1)
            frames.append(
                pd.DataFrame(
                    {
                        "after": after,
                        "group": group,
                        "token": ids,
                        "norm": rows.norm(dim=1).numpy(),
                        "drift": drift.numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


__all__ = ["ENGLISH", "OTHER", "SPECIAL", "language_examples", "token_embedding_frame", "token_groups"]
