"""Made-up languages for ToyWorld captions: the data of continual language learning (CLL-CLIP).

CLL-CLIP (Yang et al., AAAI 2024) teaches an English CLIP new languages one at a time from image
captions translated into each language. No translated corpus can be downloaded here, so each
language is generated: a nonce lexicon (deterministic per seed, words from the language's own
syllable inventory), a word order of its own, and a few loanwords, borrowed unchanged from English
or from an earlier language, which give the lexical overlap CLL-CLIP's shared vocabulary (and its
TEIR regulariser) is about. A caption is translated from the *labels* of its English original, so
the two are exactly parallel, and `Language.parse` reads a caption back into those labels.

The profiles (one per language, in arrival order):

| name | noun phrase order | texture phrase | frame word | other |
|---|---|---|---|---|
| avo | shape colour size position texture | texture background | initial | |
| bekri | texture position size colour shape | background texture | final | |
| chusa | size shape colour texture position | texture background | initial | colour agrees with the noun class |
| delmi | position shape texture colour size | background texture | initial | accented vowels (é, ó) |
| esko | colour shape texture size position | texture background | final | |
| fanir | size texture shape position colour | background texture | final | colour agrees with the noun class |

Words are one or two open syllables, so a full caption (six or seven words) stays within ToyCLIP's
24-token context under the open_clip BPE tokenizer (checked by tests/test_languages.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cliplab.toyworld.vocabulary import COLOUR_SYNONYMS, COLOURS, POSITIONS, SHAPES, SIZE_SYNONYMS, TEXTURES

SLOTS = ("shape", "colour", "size", "position", "texture")
SIZE_NAMES = ("small", "medium", "large")
# The frame of an English template ("a photo of a ...", "an image of a ...", "... there is ...")
FRAMES = ("plain", "photo", "image", "there_is")
# Function words every language names; "shape" and "object" are the head nouns of colour-only captions.
FUNCTION_WORDS = ("background", "photo", "image", "there_is", "shape", "object")
# Noun classes for languages with agreement: round things and angular things.
ROUND_SHAPES = frozenset({"circle", "ring", "heart", "diamond"})
GENERIC_CLASS = {"shape": 1, "object": 0}

_SLOT_CLASSES: dict[str, tuple[str, ...]] = {
    "shape": tuple(SHAPES),
    "colour": tuple(COLOURS),
    "size": SIZE_NAMES,
    "position": tuple(POSITIONS),
    "texture": tuple(TEXTURES),
}


@dataclass(frozen=True)
class Profile:
    """The grammar and sound of one language."""

    name: str
    order: tuple[str, ...]
    background_first: bool
    frame_final: bool
    agreement: bool
    consonants: str
    vowels: tuple[str, ...]


PROFILES: tuple[Profile, ...] = (
    Profile("avo", ("shape", "colour", "size", "position", "texture"), False, False, False, "ptkmnlsv", tuple("aeiou")),
    Profile("bekri", ("texture", "position", "size", "colour", "shape"), True, True, False, "bdgrzmn", tuple("aiou")),
    Profile("chusa", ("size", "shape", "colour", "texture", "position"), False, False, True, "kstrnlh", tuple("aeiu")),
    Profile(
        "delmi",
        ("position", "shape", "texture", "colour", "size"),
        True,
        False,
        False,
        "dlmnrst",
        ("a", "é", "i", "ó", "u"),
    ),
    Profile("esko", ("colour", "shape", "texture", "size", "position"), False, True, False, "fgklmpsw", tuple("aeio")),
    Profile("fanir", ("size", "texture", "shape", "position", "colour"), True, True, True, "bfhjnrtv", tuple("aeiou")),
)
LANGUAGE_NAMES = tuple(p.name for p in PROFILES)
# Class names CLIP's BPE splits into several tokens: not borrowed, so that an English loanword is
# always the very token English uses (checked by tests/test_languages.py).
_MULTI_TOKEN_NAMES = frozenset({"cyan", "checkered"})
# English words a nonce word must not be (it would read as English): ToyWorld's caption words and
# short function words.
_ENGLISH_AVOID = frozenset(
    {w for table in (SHAPES, COLOUR_SYNONYMS, SIZE_SYNONYMS, TEXTURES) for words in table.values() for w in words}
    | set(POSITIONS)
    | {"a", "an", "on", "of", "is", "the", "that", "with", "there", "over", "in", "at", "to", "be", "me", "no"}
    | {"so", "we", "he", "do", "go", "it", "photo", "image", "shape", "object", "background", "left", "right"}
)


def concepts() -> list[tuple[str, str]]:
    """Every (slot, class) a language names: the five attributes' classes, then the function words."""
    items = [(slot, name) for slot in SLOTS for name in _SLOT_CLASSES[slot]]
    return items + [("word", w) for w in FUNCTION_WORDS]


@dataclass
class Language:
    """One made-up language: its profile, lexicon (concept -> word), loanwords and false friends
    (concept -> the language whose word it shares: "english" or an earlier language).

    For a language with agreement, colour entries are stems and `prefixes` the two noun-class
    prefixes; the surface form is prefix + stem (`colour_word`)."""

    profile: Profile
    lexicon: dict[tuple[str, str], str]
    loans: dict[tuple[str, str], str] = field(default_factory=dict)
    prefixes: tuple[str, str] = ("", "")
    false_friends: dict[tuple[str, str], str] = field(default_factory=dict)  # concept -> whose word it is

    @property
    def name(self) -> str:
        return self.profile.name

    def colour_word(self, colour: str, noun_class: int) -> str:
        stem = self.lexicon[("colour", colour)]
        return self.prefixes[noun_class] + stem if self.profile.agreement else stem

    def words(self) -> list[str]:
        """Every surface word of the language, each once, in lexicon order (agreement forms included)."""
        out: list[str] = []
        for key, word in self.lexicon.items():
            forms = (
                [self.colour_word(key[1], c) for c in (0, 1)]
                if key[0] == "colour" and self.profile.agreement
                else [word]
            )
            out.extend(f for f in forms if f not in out)
        return out

    def caption(
        self, labels: Mapping[str, str], mentions: Sequence[str], frame: str = "plain", head: str = "shape"
    ) -> str:
        """The caption of a scene: `labels` (slot -> class name) restricted to `mentions`, in `frame`.

        `head` is the noun when the shape is not mentioned ("shape" or "object", as in English
        "a red object")."""
        if frame not in FRAMES:
            raise ValueError(f"unknown frame {frame!r}; use one of {FRAMES}")
        shape = labels.get("shape") if "shape" in mentions else None
        noun_class = (0 if shape in ROUND_SHAPES else 1) if shape is not None else GENERIC_CLASS[head]
        parts: list[str] = []
        for slot in self.profile.order:
            if slot == "shape" and shape is None:
                parts.append(self.lexicon[("word", head)])
            elif slot not in mentions:
                continue
            elif slot == "colour":
                parts.append(self.colour_word(labels["colour"], noun_class))
            elif slot == "texture":
                pair = [self.lexicon[("texture", labels["texture"])], self.lexicon[("word", "background")]]
                parts.extend(reversed(pair) if self.profile.background_first else pair)
            else:
                parts.append(self.lexicon[(slot, labels[slot])])
        if frame != "plain":
            word = self.lexicon[("word", frame)]
            parts = [*parts, word] if self.profile.frame_final else [word, *parts]
        return " ".join(parts)

    def parse(self, caption: str) -> dict[str, str]:
        """The labels a caption states (slot -> class name): `caption`'s inverse on its mentions."""
        reverse: dict[str, tuple[str, str]] = {}
        for (slot, name), word in self.lexicon.items():
            if slot == "colour" and self.profile.agreement:
                for noun_class in (0, 1):
                    reverse[self.colour_word(name, noun_class)] = (slot, name)
            else:
                reverse[word] = (slot, name)
        out = {}
        for word in caption.split():
            if word not in reverse:
                raise ValueError(f"{word!r} is not a word of {self.name}")
            slot, name = reverse[word]
            if slot != "word":
                out[slot] = name
        return out


def _syllables(profile: Profile) -> list[str]:
    return [c + v for c in profile.consonants for v in profile.vowels]


def _draw_word(
    rng: np.random.Generator, syllables: list[str], n_syllables: int, taken: set[str], prefixes: Sequence[str] = ("",)
) -> str:
    """A new word (or colour stem): neither it nor any prefixed form is taken or English."""
    for _ in range(10_000):
        word = "".join(syllables[int(i)] for i in rng.integers(len(syllables), size=n_syllables))
        forms = {p + word for p in prefixes}
        if not forms & (taken | _ENGLISH_AVOID):
            taken.update(forms)
            return word
    raise RuntimeError("syllable inventory exhausted; use fewer concepts or more syllables")


# English caption words a false friend may take: single CLIP tokens that ToyWorld's English captions use.
_ENGLISH_FALSE_FRIENDS = ("box", "disc", "plus", "donut", "big", "tiny", "little", "violet", "spotted")


def make_languages(
    n: int = 4,
    seed: int = 0,
    english_loans: int = 3,
    earlier_loans: int = 3,
    english_false_friends: int = 1,
    earlier_false_friends: int = 2,
) -> list[Language]:
    """The first `n` languages of `PROFILES` with lexicons drawn from `seed`.

    Shared words, as real languages have them:
    - *loanwords*, same word and same meaning: `english_loans` content words borrowed from English
      unchanged (the class name, e.g. "star", one CLIP token) and, from the second language on,
      `earlier_loans` from a random earlier language;
    - *false friends*, same word and another meaning (German "rot" is red, not decay):
      `english_false_friends` content words that are English caption words naming something else
      ("box" for a colour, say), and, from the second language on, `earlier_false_friends` words of
      an earlier language meaning something else there. These are what makes a shared token a
      source of interference between languages.

    Shared words never touch the function words, nor the colours of a language with agreement
    (their surface forms carry a prefix). Every other word is new to all languages.
    """
    if not 1 <= n <= len(PROFILES):
        raise ValueError(f"n must be between 1 and {len(PROFILES)} (the defined language profiles), got {n}")
    languages: list[Language] = []
    used: set[str] = {name for _, name in concepts()}
    for index, profile in enumerate(PROFILES[:n]):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4004, index]))
        syllables = _syllables(profile)
        loanable = [
            c
            for c in concepts()
            if c[0] != "word" and c[1] not in _MULTI_TOKEN_NAMES and not (profile.agreement and c[0] == "colour")
        ]
        picks = rng.permutation(len(loanable))
        loans: dict[tuple[str, str], str] = {loanable[int(i)]: "english" for i in picks[:english_loans]}
        if languages:
            for i in picks[english_loans : english_loans + earlier_loans]:
                source = languages[int(rng.integers(len(languages)))]
                loans[loanable[int(i)]] = source.name
        lexicon: dict[tuple[str, str], str] = {}
        prefixes = ("", "")
        if profile.agreement:
            prefixes = (_draw_word(rng, syllables, 1, used), _draw_word(rng, syllables, 1, used))
        for concept in concepts():
            source = loans.get(concept)
            if source == "english":
                lexicon[concept] = concept[1]
            elif source is not None:
                lexicon[concept] = next(lang for lang in languages if lang.name == source).lexicon[concept]
            elif concept[0] == "colour" and profile.agreement:
                lexicon[concept] = _draw_word(rng, syllables, 1, used, prefixes)
            else:
                lexicon[concept] = _draw_word(rng, syllables, 1 if concept[0] == "word" else 2, used)
        language = Language(profile, lexicon, loans, prefixes)
        _add_false_friends(language, languages, rng, english_false_friends, earlier_false_friends)
        languages.append(language)
    return languages


def _add_false_friends(
    language: Language, earlier: list[Language], rng: np.random.Generator, n_english: int, n_earlier: int
) -> None:
    """Give some of `language`'s own (non-loan) content words the form of a word meaning something else
    in English or in an earlier language."""
    own = [
        c
        for c in language.lexicon
        if c[0] != "word" and c not in language.loans and not (language.profile.agreement and c[0] == "colour")
    ]
    chosen = [own[int(i)] for i in rng.permutation(len(own))[: n_english + (n_earlier if earlier else 0)]]
    taken = set(language.words())
    for k, concept in enumerate(chosen):
        if k < n_english:
            candidates = [w for w in _ENGLISH_FALSE_FRIENDS if w not in taken]
            source = "english"
        else:
            other = earlier[int(rng.integers(len(earlier)))]
            candidates = [
                w
                for c, w in other.lexicon.items()
                if c != concept and c[0] != "word" and c not in other.loans and c not in other.false_friends
            ]
            candidates = [w for w in candidates if w not in taken and w in other.words()]
            source = other.name
        if not candidates:
            continue
        word = candidates[int(rng.integers(len(candidates)))]
        language.lexicon[concept] = word
        language.false_friends[concept] = source
        taken.add(word)


__all__ = [
    "FRAMES",
    "FUNCTION_WORDS",
    "LANGUAGE_NAMES",
    "PROFILES",
    "SLOTS",
    "Language",
    "Profile",
    "concepts",
    "make_languages",
]
