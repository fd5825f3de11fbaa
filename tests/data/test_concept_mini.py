"""concept-mini: two distinct concepts per input image, references of each alone, exact masks."""
from bench.data.concept_mini import CONCEPT_KINDS, ConceptMini, concept_identity, concept_pairs
from bench.registry import DATASETS


def test_pairs_have_distinct_kinds_and_are_deterministic():
    pairs = concept_pairs(3, 16)
    assert pairs == concept_pairs(3, 16) and len(set(pairs)) == 16
    for i, j in pairs:
        assert concept_identity(3, i)["kind"] != concept_identity(3, j)["kind"]


def test_train_and_reference_samples():
    ds = DATASETS.get("concept-mini")(n_pairs=2)
    assert isinstance(ds, ConceptMini)
    train = ds.load("train")[0]
    assert train.image.shape == (3, 64, 64) and train.meta["object_masks"].shape == (2, 64, 64)
    assert not (train.meta["object_masks"][0] & train.meta["object_masks"][1]).any()
    assert train.prompt == f"a photo of a {train.meta['kinds'][0]} and a {train.meta['kinds'][1]}"
    assert all(k in CONCEPT_KINDS for k in train.meta["kinds"])
    refs = ds.load("test")
    assert len(refs) == 16 and refs[0].meta["concepts"] == [train.meta["concepts"][0]]
    assert refs[1].meta["concepts"] == [train.meta["concepts"][1]]
    assert ds.split_checksum("train") != ds.split_checksum("test")
