"""manifests/: the example settings file is valid and complete, and the systemd unit runs the
controller the way the README's install says. (The controller image is built and run on the
real engine in tests/engine/test_image.py.)"""

from __future__ import annotations

import configparser

from conftest import ROOT
from controller.settings import FIELDS, resolve

MANIFESTS = ROOT / "manifests"


def test_the_example_settings_file_is_valid_and_names_every_setting() -> None:
    text = (MANIFESTS / "llm-gitops.yaml").read_text()
    resolved = resolve(text, "manifests/llm-gitops.yaml", {}, {})
    assert resolved.settings.repo and resolved.settings.state_dir == "/var/lib/llm-gitops"
    missing = [f for f in FIELDS if f"{f}:" not in text]
    assert missing == [], f"the example settings file does not mention {missing}"


def test_the_systemd_unit_runs_the_controller_with_the_example_settings() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(MANIFESTS / "systemd" / "llm-gitops.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/llm-gitops/llm-gitops.yaml"]
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 60  # > a 30 s docker stop
    assert service["Restart"] == "always" and service["EnvironmentFile"] == "/etc/llm-gitops/env"
    assert "docker.service" in unit["Unit"]["After"]
    env = (MANIFESTS / "systemd" / "llm-gitops.env").read_text()
    assert "LITELLM_MASTER_KEY=" in env and "LLM_GITOPS_WEBHOOK_SECRET=" in env
    assert "state_dir: /var/lib/llm-gitops" in (MANIFESTS / "llm-gitops.yaml").read_text()
    assert service["StateDirectory"] == "llm-gitops"  # systemd makes /var/lib/llm-gitops
