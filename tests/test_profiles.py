"""Profiles fill unset parameters; bad values are refused before any work, naming the allowed."""

from __future__ import annotations

import pytest

from mri_helpers import profiles


def test_shipped_profiles_pass_their_own_checks() -> None:
    for name in profiles.PROFILES:
        values = profiles.load_profile(name)
        assert values["PROFILE"] == name
        profiles.check(values)


def test_none_takes_the_profile_value_and_explicit_values_win(monkeypatch) -> None:
    monkeypatch.setattr(profiles, "load_profile", lambda name: {"PROFILE": name, "SEED": 5})
    assert profiles.resolve("smoke", SEED=None)["SEED"] == 5
    assert profiles.resolve("smoke", SEED=7)["SEED"] == 7
    with pytest.raises(profiles.ParameterError, match=r"\['NUM_PHANTOM_SLICES'\] left at None"):
        profiles.resolve("smoke", NUM_PHANTOM_SLICES=None)


@pytest.mark.parametrize(
    ("profile", "overrides", "message"),
    [
        ("huge", {}, r"PROFILE='huge' is not allowed; use one of \('smoke', 'course', 'full'\)"),
        ("smoke", {"SEED": -1}, r"SEED=-1 is out of range \(int from 0"),
        ("smoke", {"SEED": "7"}, "SEED='7' must be a whole number"),
        ("smoke", {"SEED": True}, "SEED=True must be a whole number"),
        ("smoke", {"NUM_PHANTOM_SLICES": 0}, "NUM_PHANTOM_SLICES=0 is out of range"),
        ("smoke", {"NUM_PHANTOM_SLICES": 2.5}, "must be a whole number"),
        ("smoke", {"DATA": 3}, "DATA=3 must be a string"),
        ("smoke", {"COLOUR": 3}, r"unknown parameter\(s\) \[.COLOUR.\]"),
    ],
)
def test_bad_parameters_are_refused(profile, overrides, message) -> None:
    with pytest.raises(profiles.ParameterError, match=message):
        profiles.resolve(profile, **overrides)


def test_whole_floats_become_ints() -> None:
    assert profiles.resolve("smoke", SEED=3.0)["SEED"] == 3


def test_image_size_must_suit_the_generator() -> None:
    with pytest.raises(
        profiles.ParameterError,
        match=r"IMAGE_SIZE=100: .*multiple of 2\*\*5 = 32 \(e.g. 96 or 128\)",
    ):
        profiles.resolve("course", IMAGE_SIZE=100)
    with pytest.raises(profiles.ParameterError, match="GENERATOR='huge' is not allowed"):
        profiles.resolve("course", GENERATOR="huge")
    assert profiles.resolve("full", IMAGE_SIZE=512)["IMAGE_SIZE"] == 512


def test_network_names_match_the_models_module() -> None:
    from mri_helpers import models

    assert set(profiles.NETWORKS) == set(models.GENERATORS) == set(models.DISCRIMINATORS)
