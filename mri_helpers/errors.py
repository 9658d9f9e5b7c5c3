"""The errors a user can cause; each message says what is wrong and how to fix it.

They share one base, `CourseError`, so the `mri-course` command reports any of them as a
one-line message instead of a traceback.
"""

from __future__ import annotations


class CourseError(Exception):
    """An error in what the user passed (data, parameters, model files, folders)."""


class DataError(CourseError, ValueError):
    """The data cannot be used as given."""


class DataProblems(DataError):
    """Several files are unreadable; `problems` lists every one of them."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{len(problems)} problem(s) in {source}:\n{lines}\n"
            "Fix or remove these files (the others are fine) and try again."
        )


class ParameterError(CourseError, ValueError):
    """A notebook or command-line parameter is out of range or of the wrong type."""


class ModelConfigError(CourseError, ValueError):
    """A network configuration or image size that cannot work."""


class ModelFileError(CourseError, ValueError):
    """A model file that is missing, not a Keras model, or refused because it carries code."""


class CourseRunError(CourseError, RuntimeError):
    """A batch run could not start, or a notebook in it failed."""


class MissingManifestError(CourseError, FileNotFoundError):
    """A notebook needs the output of an earlier one that has not run in this run folder."""


class OutputPlaceError(DataError):
    """A place to write that cannot be used: a file or special file where a folder is
    needed, an input, or somewhere nothing can be created (a DataError, as it always was for
    the Python functions that write)."""
