"""What launchers read of the profile: their section and their role's, typed, and as the state
file keeps them (plain data, which older state files must still give back)."""
from __future__ import annotations

import json

import pytest

from minipar.cluster.launchers import ENGINE_LAUNCHERS, CONTROLLER_LAUNCHERS, import_launcher, launcher_settings
from minipar.cluster.launchers.local import LocalEngineSetLauncher
from minipar.cluster.launchers.settings import LauncherSettings
from minipar.config import load_config

PROFILE = """
[launcher.slurm]
queue = "short"
options = ["#SBATCH --mem=4G"]
[launcher.slurm.engines]
batch_template_file = "engines.sh"
[launcher.slurm.controller]
batch_template = "#!/bin/sh"
"""


@pytest.fixture
def slurm_config(tmp_path):
    (tmp_path / "minipar.toml").write_text(PROFILE)
    return load_config(tmp_path, {"launcher.slurm.account": "proj42"})


def test_a_launcher_reads_its_section_and_its_role_s_by_attribute(slurm_config):
    cls = import_launcher(ENGINE_LAUNCHERS["slurm"])
    settings = launcher_settings(slurm_config, cls, "engines")
    assert (settings.queue, settings.account, settings.qos, settings.options) == ("short", "proj42", "", [
        "#SBATCH --mem=4G"])
    assert (settings.batch_template_file, settings.batch_template) == ("engines.sh", "")
    assert settings.configured == ("queue", "account", "options")
    controller = launcher_settings(slurm_config, import_launcher(CONTROLLER_LAUNCHERS["slurm"]), "controller")
    assert (controller.batch_template, controller.batch_template_file) == ("#!/bin/sh", "")
    with pytest.raises(AttributeError, match="SlurmLauncherConfig \\+ SlurmEnginesTemplateConfig has no setting 'x'"):
        settings.x


def test_settings_are_copies_of_the_config(slurm_config):
    cls = import_launcher(ENGINE_LAUNCHERS["slurm"])
    settings = launcher_settings(slurm_config, cls, "engines")
    settings.options.append("#SBATCH --exclusive")
    assert slurm_config.section("launcher.slurm").options == ["#SBATCH --mem=4G"]
    assert launcher_settings(slurm_config, cls, "engines").options == ["#SBATCH --mem=4G"]


def test_the_state_file_keeps_plain_data_and_gives_the_typed_settings_back(slurm_config, tmp_path):
    cls = import_launcher(ENGINE_LAUNCHERS["slurm"])
    launcher = cls(tmp_path, "c1", n=2, first_index=4, settings=launcher_settings(slurm_config, cls, "engines"))
    saved = json.loads(json.dumps(launcher.to_dict()))
    assert saved["options"] == {"first_index": 4, "settings": {
        "queue": "short", "account": "proj42", "timelimit": "", "options": ["#SBATCH --mem=4G"], "context": {},
        "qos": "", "batch_template": "", "batch_template_file": "engines.sh",
        "configured": ["queue", "account", "options"]}}
    again = cls.from_dict(saved)
    assert isinstance(again.settings, LauncherSettings)
    assert again.settings.to_dict() == launcher.settings.to_dict()
    assert (again.settings.queue, again.settings.batch_template_file) == ("short", "engines.sh")
    assert again.options == {"first_index": 4}


def test_an_older_state_file_still_loads(tmp_path):
    """Written before `configured` was kept, or with a key no section has now: what is missing
    takes its default, what is unknown is dropped."""
    cls = import_launcher(ENGINE_LAUNCHERS["pbs"])
    launcher = cls.from_dict({"class": "x", "profile_dir": str(tmp_path), "cluster_id": "c1", "n": 3,
                              "options": {"settings": {"queue": "long", "qos": "high", "retired_key": 1}}})
    assert (launcher.settings.queue, launcher.settings.account, launcher.settings.configured) == ("long", "", ())
    assert not hasattr(launcher.settings, "qos") and not hasattr(launcher.settings, "retired_key")
    launcher = cls.from_dict({"class": "x", "profile_dir": str(tmp_path), "n": 3})
    assert launcher.settings.queue == "" and launcher.settings.batch_template == ""


def test_a_launcher_without_a_section_has_empty_settings(tmp_path):
    launcher = LocalEngineSetLauncher(tmp_path, "c1", n=1, settings={})
    assert launcher.settings.to_dict() == {}
    assert launcher.to_dict()["options"]["settings"] == {}
    with pytest.raises(AttributeError, match="a launcher without settings has no setting 'queue'"):
        launcher.settings.queue
