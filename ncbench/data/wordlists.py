"""Word classes for the ``partial`` noise model: content words a FOIL-style corruption may swap.

A class (e.g. ``person``, ``colour``, ``action``, ``place``) is a list of *concepts*, each a list of
words that mean the same thing. ``partial`` noise replaces one word of a caption by a word of the
same class but of a different concept ("a *red* dog on the beach" → "a *blue* dog on the beach"),
never by a synonym, so the corrupted caption is wrong about exactly one thing.

Two lists ship:

* ``synthetic``: derived from the embedded generator's slots (``ncbench.data.synthetic.SLOTS``),
  so every swap on ``synthetic``/``synthetic-small`` changes the scene concept a caption names;
* ``english``: a small hand-made list for real captions (Flickr8k, Flickr30K, MS-COCO style),
  singular nouns of people, animals, vehicles and things (separate classes, so a *man* never
  becomes a *guitar*, as FOIL swaps within a super-category), basic colours, common -ing actions
  and places. Hypernyms (*person*, *child*, *kid*, *animal*, *people*) and words that rarely name
  the depicted thing (*water*, *area*) are left out on purpose: replacing *boy* by *child* is not an
  error. Plurals are not included, so a swap never breaks number agreement.

A word that is absent from a dataset's vocabulary is never used as a replacement (it would become
``<unk>``, a give-away rather than a corruption); ``ncbench.data.noise_models`` filters for that.
"""

from __future__ import annotations

WordClasses = dict[str, list[list[str]]]

ENGLISH: WordClasses = {
    "person": [["man", "guy"], ["woman", "lady"], ["boy"], ["girl"], ["baby", "toddler"]],
    "animal": [["dog", "puppy"], ["cat", "kitten"], ["horse", "pony"], ["bird"], ["cow"], ["sheep"]],
    "vehicle": [["bike", "bicycle"], ["motorcycle", "motorbike"], ["car"], ["boat"], ["bus"], ["truck"]],
    "thing": [["ball"], ["skateboard"], ["surfboard"], ["kite"], ["guitar"], ["frisbee"]],
    "colour": [
        ["red"], ["blue"], ["green"], ["yellow"], ["black"], ["white"], ["brown"], ["orange"],
        ["pink"], ["purple"], ["grey", "gray"],
    ],
    "action": [
        ["running"], ["jumping"], ["sitting"], ["standing"], ["walking"], ["swimming"], ["climbing"],
        ["riding"], ["sleeping"], ["eating"], ["skiing"], ["dancing"], ["surfing"], ["skateboarding"],
        ["throwing"], ["catching"], ["reading"], ["singing"],
    ],
    "place": [
        ["beach", "shore"], ["street", "road"], ["park"], ["field", "meadow"], ["forest", "woods"],
        ["snow"], ["pool"], ["lake"], ["mountain"], ["grass"], ["ocean", "sea"], ["river"], ["stage"],
        ["desert"], ["kitchen"], ["playground"], ["sidewalk"], ["city"],
    ],
}


def synthetic_classes() -> WordClasses:
    """The synthetic generator's slots, each concept's synonyms a group."""
    from .synthetic import SLOTS

    return {slot: [list(concept) for concept in concepts] for slot, concepts in SLOTS.items()}


def word_classes(name: str) -> WordClasses:
    """The word list called ``name`` (``english`` or ``synthetic``)."""
    if name == "english":
        return ENGLISH
    if name == "synthetic":
        return synthetic_classes()
    from ..errors import ConfigError

    raise ConfigError(f"unknown word list {name!r} (known: english, synthetic)")


def concept_table(classes: WordClasses) -> dict[str, tuple[str, int]]:
    """word → (class, concept number); a word listed twice is an error in the list."""
    table: dict[str, tuple[str, int]] = {}
    for cls, concepts in classes.items():
        for k, words in enumerate(concepts):
            for w in words:
                if w in table:
                    raise ValueError(f"word list: {w!r} appears twice ({table[w]} and {(cls, k)})")
                table[w] = (cls, k)
    return table
