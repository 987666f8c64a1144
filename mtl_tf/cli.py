"""The `mtl-tf` command line."""

from __future__ import annotations

import os
import sys

import click




class _UserError(click.ClickException):
    """A problem with the user's input, shown as one clear message without a traceback."""


def _user_errors():
    from mtl_tf.config import RecipeError
    from mtl_tf.data.pipeline import DataError
    from mtl_tf.train.fit import RunFolderError

    return (RecipeError, DataError, RunFolderError, FileNotFoundError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtl-tf")
def main():
    """Multitask vision models for real-time embedded deployment."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/<recipe name>).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any recipe key, e.g. --set data.batch_size=8 (repeatable).")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
def fit(recipe, out, epochs, overrides, quiet):
    """Train the multitask model described by RECIPE and write a run folder."""
    from mtl_tf.config import load_recipe

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    try:
        config = load_recipe(recipe, overrides)
        from mtl_tf.train.fit import run_fit

        run_fit(config, out, verbose=2 if quiet else "auto")
    except _user_errors() as err:
        raise _UserError(str(err)) from None


if __name__ == "__main__":
    sys.exit(main())
