"""Run profiles and notebook parameters (explained in docs/usage.md).

Every notebook starts with one papermill `parameters` cell. Parameters left at `None` take the
value of the chosen profile (`smoke`, `course` or `full`, YAML files in `profiles/`); anything
set explicitly wins. `resolve()` checks every value before any work starts and names the
allowed values when one is wrong.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

import yaml

from .errors import ParameterError

PROFILES = ("smoke", "course", "full")
TRUE_WORDS = ("true", "yes", "on", "1")  # how a command line may write a bool, any case
FALSE_WORDS = ("false", "no", "off", "0")
NETWORKS = ("tiny", "compact", "tutorial")  # the named configurations in mri_helpers.models


@dataclass(frozen=True)
class Spec:
    """What one parameter may be: its type, bounds and, for strings, the allowed choices."""

    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def check(self, name: str, value: Any) -> Any:
        allowed = self.describe()
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ParameterError(f"{name}={value!r} must be a whole number ({allowed}).")
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is float and not is_number:
            raise ParameterError(f"{name}={value!r} must be a number ({allowed}).")
        if self.kind is float and not math.isfinite(value):
            raise ParameterError(f"{name}={value!r} must be a finite number ({allowed}).")
        if self.kind is bool and not isinstance(value, bool):
            raise ParameterError(f"{name}={value!r} must be True or False.")
        if self.kind is str and not isinstance(value, str):
            raise ParameterError(f"{name}={value!r} must be a string ({allowed}).")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{name}={value!r} is not allowed; use one of {self.choices}.")
        too_low = self.low is not None and value < self.low
        if too_low or (self.high is not None and value > self.high):
            raise ParameterError(f"{name}={value!r} is out of range ({allowed}).")
        return value

    def parse(self, name: str, text: str) -> Any:
        """The value a command line's text stands for, by this parameter's type (unchecked
        for choices; numbers are range-checked here, before a huge one becomes inf)."""
        text = text.strip()
        if self.kind is str:
            return text
        shown = _shorten(text)
        if self.kind is bool:
            if text.lower() in TRUE_WORDS + FALSE_WORDS:
                return text.lower() in TRUE_WORDS
            raise ParameterError(
                f"{name}={shown!r} must be true or false (also yes/no, on/off, 1/0)."
            )
        what = "a whole number" if self.kind is int else "a finite number"
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or (self.kind is int and number != number.to_integral()):
            raise ParameterError(f"{name}={shown!r} must be {what} ({self.describe()}).")
        too_low = self.low is not None and number < Decimal(str(self.low))
        if too_low or (self.high is not None and number > Decimal(str(self.high))):
            raise ParameterError(f"{name}={shown} is out of range ({self.describe()}).")
        return int(number) if self.kind is int else float(number)

    def describe(self) -> str:
        if self.choices:
            return f"one of {self.choices}"
        if self.low is not None and self.high is not None:
            return f"{self.kind.__name__} from {self.low} to {self.high}"
        if self.low is not None:
            return f"{self.kind.__name__} >= {self.low}"
        return self.kind.__name__


SPECS: dict[str, Spec] = {
    "PROFILE": Spec(str, "run profile", choices=PROFILES),
    "DATA": Spec(str, '"auto", "phantom" or a path to the course zip or folder'),
    "RUN_DIR": Spec(str, "folder for this run's artefacts and manifests"),
    "SEED": Spec(int, "random seed of the whole run", low=0, high=2**31 - 1),
    "NUM_PHANTOM_SLICES": Spec(int, "slices in the phantom", low=1, high=51),
    "IMAGE_SIZE": Spec(int, "side of the square network input, in pixels", low=32, high=1024),
    "BATCH_SIZE": Spec(int, "images of each contrast per training step", low=1, high=256),
    "HOLDOUT_FRACTION": Spec(float, "share of slices held out for evaluation", 0.01, 0.5),
    "DENOISE": Spec(bool, "denoise slices before the network sees them"),
    "MASK_BACKGROUND": Spec(bool, "set everything outside the head to 0"),
    "GENERATOR": Spec(str, "generator configuration", choices=NETWORKS),
    "DISCRIMINATOR": Spec(str, "discriminator configuration", choices=NETWORKS),
    "EPOCHS": Spec(int, "training epochs", low=1, high=10_000),
    "STEPS_PER_EPOCH": Spec(int, "steps per epoch; 0: one pass over the larger set", 0, 100_000),
    "LEARNING_RATE": Spec(float, "Adam learning rate", low=1e-7, high=1e-2),
    "LAMBDA_CYCLE": Spec(float, "weight of the cycle-consistency loss", low=0.0, high=1000.0),
    "IDENTITY_WEIGHT": Spec(float, "identity loss weight, share of LAMBDA_CYCLE", 0.0, 10.0),
    "ADVERSARIAL": Spec(str, "adversarial loss", choices=("lsgan", "bce")),
    "GENERATOR_AVERAGE": Spec(float, "momentum of the generators' weight average", 0.0, 0.9999),
    "RANDOM_ACQUISITION": Spec(bool, "re-acquire the generators' inputs at random (training)"),
    "POOL_SIZE": Spec(int, "history pool of generated images; 0: off", low=0, high=1000),
    "WARM_START_STEPS": Spec(int, "steps fitting the generators to classical guesses", 0, 100_000),
    "EXPORT_EVERY": Spec(int, "export the generators every N epochs", low=1, high=10_000),
    "CALIBRATE": Spec(bool, "append a grey-scale calibration to the exported generators"),
    "TEST_TIME_AUGMENTATION": Spec(bool, "exported generators average shifted, mirrored copies"),
    "TIME_BUDGET_MINUTES": Spec(float, "minutes lesson 04 may train; 0: off, all EPOCHS", 0, 1e4),
    "MIXED_PRECISION": Spec(str, "16-bit compute (GPU, bf16 CPU)", choices=("auto", "on", "off")),
    "REPRODUCIBLE": Spec(bool, "bit-identical runs with one seed on a CPU (slower)"),
    "RESTART": Spec(bool, "train afresh: discard a checkpoint or a finished training in RUN_DIR"),
    "PUBLISHED_MODEL": Spec(str, "models folder lesson 04 studies when RUN_DIR holds no run"),
}


def parse_setting(item: str) -> tuple[str, Any]:
    """A command line's `NAME=VALUE` as (NAME, checked value), read by NAME's declared type.

    Not by YAML's rules: `MIXED_PRECISION=on` stays the text "on", `EPOCHS=1e9` is a number
    (out of range), and NaN or infinity are refused.
    """
    name, sep, text = item.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParameterError(
            f"--set {_shorten(item)!r} must look like NAME=VALUE, e.g. --set EPOCHS=5; "
            f"known names: {', '.join(sorted(SPECS))}."
        )
    if name not in SPECS:
        close = difflib.get_close_matches(name.upper(), SPECS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ParameterError(
            f"--set {_shorten(item)!r}: unknown parameter {_shorten(name)!r}; {hint}"
            f"known: {', '.join(sorted(SPECS))}."
        )
    spec = SPECS[name]
    return name, spec.check(name, spec.parse(name, text))


def _shorten(text: str, limit: int = 40) -> str:
    """`text` cut to `limit` characters for a one-line message."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def load_profile(name: str) -> dict[str, Any]:
    """The parameter values of a named profile."""
    if name not in PROFILES:
        raise ParameterError(f"unknown profile {name!r}; use one of {PROFILES}.")
    text = resources.files(__package__).joinpath(f"profiles/{name}.yaml").read_text()
    return {"PROFILE": name, **(yaml.safe_load(text) or {})}


def resolve(profile: str, **parameters: Any) -> dict[str, Any]:
    """Fill parameters left at None from the profile, then check every value."""
    values = load_profile(SPECS["PROFILE"].check("PROFILE", profile))
    values.update({k: v for k, v in parameters.items() if v is not None})
    unset = sorted(k for k, v in parameters.items() if v is None and k not in values)
    if unset:
        raise ParameterError(f"{unset} left at None, but profile {profile!r} sets no value.")
    return check(values)


def check(values: dict[str, Any]) -> dict[str, Any]:
    """Check names, types and ranges of parameter values; return them (ints normalised)."""
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known: {sorted(SPECS)}.")
    checked = {name: SPECS[name].check(name, value) for name, value in values.items()}
    if "IMAGE_SIZE" in checked and "GENERATOR" in checked:
        from .models import ModelConfigError, check_image_size, generator_config

        try:
            check_image_size(checked["IMAGE_SIZE"], generator_config(checked["GENERATOR"]).depth)
        except ModelConfigError as error:
            raise ParameterError(f"IMAGE_SIZE={checked['IMAGE_SIZE']}: {error}") from None
    return checked
