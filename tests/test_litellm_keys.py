"""controller/spec/litellm_keys.py matches the LiteLLM pinned in pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from conftest import ROOT
from controller.spec import litellm_keys


def test_generated_keys_match_installed_litellm() -> None:
    fresh = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_litellm_keys.py")],
                           capture_output=True, text=True, check=True).stdout
    current = (ROOT / "controller" / "spec" / "litellm_keys.py").read_text()
    assert fresh == current, "run `make litellm-keys` after changing the pinned litellm version"


def test_pinned_version_is_the_one_installed() -> None:
    assert importlib.metadata.version("litellm") == litellm_keys.LITELLM_VERSION
