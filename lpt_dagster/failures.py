"""Errors a user can fix (a bad recipe, bad input data, a launch the machine cannot run) raised as Dagster failures showing their text.

Dagster reports an exception raised in an op as `Error occurred while executing op "raw_data":` and
keeps the exception's own message in the nested causes; a dagster.Failure is shown as it is, at
the top of the run, so the user reads the recipe field or the file and line straight away.
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

from lpt_core.config import RecipeError
from lpt_core.data.errors import DataError
from lpt_core.training.launch import LaunchError

USER_ERRORS = (RecipeError, DataError, LaunchError)


@contextlib.contextmanager
def user_errors_as_failures() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        # A retry cannot fix a recipe or an input file.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
