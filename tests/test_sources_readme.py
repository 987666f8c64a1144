"""The README's Datasets section: every source snippet is a valid config of its source."""

import re

import pytest
import yaml

from conftest import ROOT
from mtl_tf.data.sources import SOURCES


def _snippets():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Datasets", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(block)[0] for block in re.findall(r"```yaml\n(- type:.*?)```", section, re.S)]


def test_the_readme_documents_every_file_source():
    assert sorted(s["type"] for s in _snippets()) == sorted(k for k in SOURCES if not k.startswith("synthetic_"))  # built-ins need no files


@pytest.mark.parametrize("snippet", _snippets(), ids=lambda s: s["type"])
def test_each_readme_snippet_validates(snippet):
    config = SOURCES[snippet["type"]].Config.model_validate(snippet)
    assert config.label_kinds() and all(config.class_names(k) for k in config.label_kinds())
