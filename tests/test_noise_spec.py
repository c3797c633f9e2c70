"""The noise protocol as one typed value (``ncbench.data.noise_spec.NoiseSpec``)."""

from __future__ import annotations

import pytest

from ncbench.data.noise_spec import NoiseSpec, parse_noise_params
from ncbench.errors import ConfigError


def test_the_papers_protocols_keep_their_names_and_hash_fields():
    cap, img = NoiseSpec.make(), NoiseSpec.make("image")
    assert (cap.slug, cap.key, cap.label) == ("", "caption", "caption-level")
    assert (img.slug, img.key, img.label) == ("image", "image", "image-level")
    assert cap.config_fields() == {} and img.config_fields() == {"noise_type": "image"}
    assert cap.is_papers and img.is_papers
    assert cap.title == "caption-level noise (NCR, BiCro, CRCL)"


def test_model_and_changed_parameters_name_the_protocol():
    nb = NoiseSpec.make("caption", "neighbour")
    assert (nb.slug, nb.key) == ("neighbour", "caption-neighbour")
    assert nb.params_dict == {"ceiling": 0.85, "embedder": "features", "k": 10}
    assert nb.config_fields()["noise_model"] == "neighbour" and nb.config_fields()["noise_generator_version"] == "1"
    k5 = NoiseSpec.make("image", "neighbour", {"k": "5", "ceiling": "0.9"})
    assert k5.slug == "image-neighbour-ceiling0.9-k5" and k5.key == k5.slug
    assert "k=5" in k5.title and "neighbour model v1" in k5.title
    path = NoiseSpec.make("caption", "neighbour", {"embedder": "/data/clip feats.npy"})
    assert "/" not in path.slug and " " not in path.slug and path.slug.startswith("neighbour-embedder")


def test_round_trips_through_result_fields_and_keys():
    for spec in (NoiseSpec.make(), NoiseSpec.make("image"), NoiseSpec.make("caption", "partial"),
                 NoiseSpec.make("image", "mixed", {"alpha": 0.25})):
        assert NoiseSpec.from_fields(spec.identity_fields()) == spec
    assert NoiseSpec.from_fields({}) == NoiseSpec.make()  # results from before the field existed
    assert NoiseSpec.from_fields({"noise_type": "image"}) == NoiseSpec.make("image")
    assert NoiseSpec.from_key("caption-neighbour") == NoiseSpec.make("caption", "neighbour")
    assert NoiseSpec.from_key("image") == NoiseSpec.make("image")
    assert len({NoiseSpec.make(), NoiseSpec.make("caption", "shuffle", {})}) == 1


def test_bad_protocols_are_refused():
    with pytest.raises(ConfigError, match="noise type"):
        NoiseSpec.make("word")
    with pytest.raises(ConfigError, match="unknown noise model"):
        NoiseSpec.make("caption", "nearest")
    with pytest.raises(ConfigError, match="unknown parameter"):
        NoiseSpec.make("caption", "shuffle", {"k": 3})
    with pytest.raises(ConfigError, match="key=value"):
        parse_noise_params(["k5"])
    assert parse_noise_params(["k=5,ceiling=0.9", "alpha=0.3"]) == {"k": "5", "ceiling": "0.9", "alpha": "0.3"}
