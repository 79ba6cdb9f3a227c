"""Made-up languages, parallel captions and the expandable vocabulary (CLL-CLIP's data and tokens)."""

from __future__ import annotations

import open_clip
import pytest
import torch

from cliplab.models import load_model
from cliplab.tokens import ExpandedTokenizer, fit_token_embedding, use_eos_pooling
from cliplab.toyworld.languages import PROFILES, concepts, make_languages
from cliplab.toyworld.parallel import parallel_corpus
from cliplab.toyworld.world import CAPTION_TEMPLATES

torch.set_num_threads(1)
BASE = open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def languages():
    return make_languages(len(PROFILES), seed=0)


@pytest.fixture(scope="module")
def corpus(languages):
    return parallel_corpus(languages, 300, "train")


def test_lexicons_are_deterministic_per_seed_and_differ_across_seeds():
    a, b, c = make_languages(4, seed=0), make_languages(4, seed=0), make_languages(4, seed=1)
    assert [x.lexicon for x in a] == [x.lexicon for x in b]
    assert [x.lexicon for x in a] != [x.lexicon for x in c]


def test_every_caption_parses_back_to_the_labels_it_was_made_from(languages, corpus):
    for i in range(len(corpus)):
        mentions = CAPTION_TEMPLATES[int(corpus.templates[i])][1]
        truth = {slot: name for slot, name in corpus.label_names(i).items() if slot in mentions}
        for language in languages:
            assert language.parse(corpus.captions[language.name][i]) == truth, (language.name, corpus.english[i])


def _slot_order(language, caption: str) -> list[str]:
    slots = [language.parse(word) for word in caption.split()]
    return list(dict.fromkeys(next(iter(p)) for p in slots if p))


def test_languages_have_their_own_word_orders(languages):
    test = parallel_corpus(languages, 20, "test")
    assert len({p.order for p in PROFILES}) == len(PROFILES)
    for language in languages:
        for caption in test.captions[language.name]:
            assert _slot_order(language, caption) == list(language.profile.order)


def test_shared_words_are_the_designed_loans_and_false_friends_only(languages):
    english_words = {w for text in parallel_corpus(languages, 300, "train").english for w in text.split()}
    for k, language in enumerate(languages):
        english = [c for c, source in language.loans.items() if source == "english"]
        earlier = [c for c, source in language.loans.items() if source != "english"]
        assert len(english) == 3 and len(earlier) == (3 if k else 0)
        for concept in english:  # a loan from English: the English word, same meaning
            assert language.lexicon[concept] == concept[1]
        for concept in earlier:  # a loan from an earlier language: its word, same meaning
            source = next(x for x in languages if x.name == language.loans[concept])
            assert language.lexicon[concept] == source.lexicon[concept]
        friends = language.false_friends
        assert sum(s == "english" for s in friends.values()) == 1 and len(friends) == (3 if k else 1)
        for concept, source in friends.items():  # same word, another meaning
            word = language.lexicon[concept]
            if source == "english":
                assert word in english_words and word != concept[1]
            else:
                other = next(x for x in languages if x.name == source)
                assert word in other.words() and other.lexicon.get(concept) != word
        designed = {language.lexicon[c] for c in [*language.loans, *friends]}
        for other in languages[:k]:
            assert set(language.words()) & set(other.words()) <= designed


def test_every_concept_has_a_word_and_agreement_gives_two_colour_forms(languages):
    chusa = next(x for x in languages if x.name == "chusa")
    assert len(chusa.words()) == len(concepts()) + 8  # each colour stem takes one of two class prefixes
    red_circle = chusa.caption({"shape": "circle", "colour": "red"}, ("shape", "colour"))
    red_star = chusa.caption({"shape": "star", "colour": "red"}, ("shape", "colour"))
    assert chusa.colour_word("red", 0) in red_circle.split() and chusa.colour_word("red", 1) in red_star.split()
    assert chusa.parse(red_circle)["colour"] == chusa.parse(red_star)["colour"] == "red"


def test_captions_fit_toyclip_context_without_truncation(languages, corpus):
    test = parallel_corpus(languages, 300, "test")
    longest = max(
        len(BASE.encode(text))
        for data in (corpus, test)
        for texts in [data.english, *data.captions.values()]
        for text in texts
    )
    assert longest + 2 <= 24, longest


def test_splits_draw_their_own_images_and_test_captions_name_every_attribute(languages):
    train, test = parallel_corpus(languages, 50, "train"), parallel_corpus(languages, 50, "test")
    assert not torch.equal(train.images, test.images)
    assert all(len(CAPTION_TEMPLATES[int(t)][1]) == 5 for t in test.templates)
    with pytest.raises(ValueError, match="split must be one of"):
        parallel_corpus(languages, 5, "dev")


# --- the expandable vocabulary ---------------------------------------------------------------


def test_expanded_tokenizer_equals_the_base_one_while_no_language_is_active(languages, corpus):
    tokenizer = ExpandedTokenizer(BASE, [x.words() for x in languages], active_rows=lambda: BASE.vocab_size)
    texts = corpus.english[:50] + corpus.captions["delmi"][:50] + ["an image of a star!"]
    assert torch.equal(tokenizer(texts), BASE(texts))


def test_english_captions_keep_their_tokens_when_every_language_is_learned(languages, corpus):
    tokenizer = ExpandedTokenizer(BASE, [x.words() for x in languages])  # every language active
    assert torch.equal(tokenizer(corpus.english), BASE(corpus.english))


def test_new_ids_follow_the_languages_and_shared_words_keep_their_ids(languages):
    tokenizer = ExpandedTokenizer(BASE, [x.words() for x in languages])
    assert tokenizer.bounds[0] == 49408 and tokenizer.bounds == sorted(tokenizer.bounds)
    bekri = languages[1]
    # a word bekri borrowed from avo keeps avo's token: no id of bekri's range is spent on it
    borrowed = [bekri.lexicon[c] for c, s in bekri.loans.items() if s == "avo"]
    assert borrowed and all(len(tokenizer.encode(w)) == 1 for w in borrowed)
    assert not {tokenizer.encode(w)[0] for w in borrowed} & set(tokenizer.new_ids(1))
    # and an English loan keeps CLIP's own token
    for language in languages:
        for concept in (c for c, s in language.loans.items() if s == "english"):
            assert (
                tokenizer.encode(language.lexicon[concept]) == BASE.encode(concept[1])
                and len(BASE.encode(concept[1])) == 1
            )
    # only ids of learned languages are used: bekri's words split into BPE pieces until it is learned
    rows = [tokenizer.vocab_size_after(0)]
    tokenizer.active_rows = lambda: rows[0]
    word = next(w for w in bekri.words() if tokenizer.added.get(w, 0) >= rows[0])
    assert tokenizer.encode(word) == BASE.encode(word)
    rows[0] = tokenizer.vocab_size_after(1)
    assert tokenizer.encode(word) == [tokenizer.added[word]]
    assert tokenizer.state == rows[0]


def test_truncation_keeps_the_end_token_last():
    tokenizer = ExpandedTokenizer(BASE, [["zuzu"]])
    out = tokenizer(" ".join(["zuzu"] * 40), context_length=8)
    assert out[0].tolist() == [49406] + [49408] * 6 + [49407]


def test_eos_pooling_equals_argmax_pooling_on_unexpanded_text_and_survives_new_ids():
    bundle = load_model("toyclip")
    model, tokens = bundle.model, bundle.tokenizer(["a red circle", "a photo of a big blue star on the left"])
    with torch.no_grad():
        before = model.encode_text(tokens)
        use_eos_pooling(model, bundle.tokenizer.eot_token_id)
        assert torch.equal(model.encode_text(tokens), before)
        # an id above the end token would be picked by argmax pooling; eos pooling ignores it
        fit_token_embedding(model, {"token_embedding.weight": torch.zeros(49410, 128)})
        assert model.token_embedding.num_embeddings == 49410
        expanded = tokens.clone()
        expanded[0, 1] = 49409
        assert torch.allclose(model.encode_text(expanded)[1], before[1])
        assert not torch.allclose(model.encode_text(expanded)[0], before[0])


def test_a_smaller_vocabulary_is_not_fitted_but_reported_by_the_loader(tmp_path):
    from cliplab.checkpoints import CheckpointError, load_weights

    model = load_model("toyclip").model
    state = {**model.state_dict(), "token_embedding.weight": torch.zeros(10, 128)}
    fit_token_embedding(model, state)
    assert model.token_embedding.num_embeddings == 49408
    with pytest.raises(CheckpointError, match="another shape"):
        load_weights(model, state, tmp_path / "small.safetensors")


def test_language_summary_reads_the_targets_by_hand():
    from cliplab.results import RunResult
    from cliplab.results.languages import language_matrix_frame, language_summary

    t2i = [[80.0, 10.0], [60.0, 90.0]]
    result = RunResult(
        method="cll_clip",
        scenario="toy-languages",
        model="toyclip",
        seed=0,
        tasks=["avo", "bekri"],
        accuracy_matrix=t2i,
        retrieval={"english": {"t2i_r1": [96.0, 95.0, 94.5]}},
        summary={"transfer": 10.0, "avg": 60.0, "last": 75.0, "bwt": -20.0, "forgetting": 20.0},
        extra={
            "protocol": "language_continual",
            "retrieval_matrices": {"t2i_r1": t2i, "i2t_r1": [[70.0, 5.0], [50.0, 80.0]]},
            "retrieval_zero_shot_rows": {"t2i_r1": [2.0, 3.0], "i2t_r1": [1.0, 1.0]},
        },
    )
    summary = language_summary(result)
    assert summary["english_delta"] == pytest.approx(-1.5)
    assert summary["min_language"] == 60.0 and summary["mean_language"] == 75.0
    assert summary["min_language_ratio"] == pytest.approx(60 / 96)
    assert summary["i2t_mean_language"] == 65.0 and summary["bwt"] == -20.0
    matrix, before = language_matrix_frame([result], "i2t_r1")
    assert matrix.loc["after bekri", "avo"] == 50.0 and before.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="direction must be one of"):
        language_matrix_frame([result], "mean")


def test_the_results_table_of_language_runs_has_their_columns(tmp_path):
    from cliplab.results import RunResult, save_run
    from cliplab.study.tables import LANGUAGE_CONTINUAL_COLUMNS, results_table

    for seed, weakest in ((0, 40.0), (1, 60.0)):
        t2i = [[80.0, 10.0], [weakest, 90.0]]
        save_run(
            RunResult(
                method="cll_clip",
                scenario="toy-languages",
                model="toyclip",
                seed=seed,
                tasks=["avo", "bekri"],
                accuracy_matrix=t2i,
                retrieval={"english": {"t2i_r1": [96.0, 95.0, 95.0], "i2t_r1": [97.0, 97.0, 96.0]}},
                summary={
                    "transfer": 10.0,
                    "avg": 50.0,
                    "last": 60.0,
                    "bwt": -20.0,
                    "forgetting": 20.0,
                    "i2t_last": 55.0,
                },
                extra={"protocol": "language_continual"},
            ),
            tmp_path / "toy-languages" / "cll_clip" / f"seed{seed}",
        )
    table = results_table(tmp_path)
    assert list(table.columns) == [*LANGUAGE_CONTINUAL_COLUMNS, "seeds"]
    row = table.loc[("toy-languages", "cll_clip")]
    assert row["weakest language"] == "50.0 ± 14.1" and row["Δ English t2i R@1"] == "-1.0 ± 0.0" and row["seeds"] == 2
