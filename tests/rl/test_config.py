"""Config loading: YAML mirrors the dataclasses; bad fields fail naming the field."""
from pathlib import Path

import pytest

from rl.cli import split_overrides
from rl.config import ConfigError, TrainConfig, load_config
from tests.helpers import ROOT

# sft_*.yaml are `rl sft` configs, loaded by load_config(kind=SFTConfig) (tests/test_sft.py checks them)
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("sft_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig) and cfg.data.tasks


def test_tiny_is_the_cpu_default():
    cfg = load_config("configs/tiny.yaml")
    assert cfg.cluster.address is None and cfg.rollout.gpus_per_worker == 0 and cfg.learner.gpus_per_worker == 0
    assert cfg.model.path.startswith("packaged:")


def test_dotted_overrides_apply_with_yaml_types():
    cfg = load_config("configs/tiny.yaml", ["rollout.group_size=4", "learner.lr=1e-5", "grpo.normalize_std=false",
                                            "data.tasks.0.weight=2", "learner.betas=[0.9, 0.95]"])
    assert cfg.rollout.group_size == 4 and cfg.learner.lr == 1e-5 and cfg.grpo.normalize_std is False
    assert cfg.data.tasks[0].weight == 2.0 and cfg.learner.betas == (0.9, 0.95)


def test_cli_override_forms():
    assert split_overrides(["--a.b", "1", "--c.d=2", "e.f=3"]) == ["a.b=1", "c.d=2", "e.f=3"]
    with pytest.raises(SystemExit):
        split_overrides(["--a.b"])


@pytest.mark.parametrize("override, message", [
    ("rollout.grop_size=4", "unknown field 'rollout.grop_size'; did you mean 'group_size'"),
    ("learner.zero_stage=5", "learner.zero_stage=5 is not allowed"),
    ("learner.lr=fast", "learner.lr must be float"),
    ("rollout.group_size=1", "rollout.group_size=1"),
    ("grpo.loss_agg=sum", "grpo.loss_agg='sum' is not allowed"),
    ("learner.mini_batches=5", "do not split into"),
    ("data.tasks.0.bogus=1", "unknown field 'data.tasks[0].bogus'"),
])
def test_invalid_fields_fail_naming_the_field(override, message):
    with pytest.raises(ConfigError, match="tiny.yaml") as err:
        load_config("configs/tiny.yaml", [override])
    assert message in str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_every_actor_group_section_shares_one_base():
    from rl.config import ActorGroupConfig

    cfg = load_config("configs/tiny.yaml")
    groups = [cfg.rollout, cfg.reward, cfg.learner, cfg.judge, cfg.reward_model]
    assert all(isinstance(g, ActorGroupConfig) for g in groups)
    assert cfg.reward.cpus_per_worker == 0.5 and cfg.reward.threads == 1  # the reward role's own defaults
    assert load_config("configs/tiny.yaml", ["reward.gpus_per_worker=0"]).reward.gpus_per_worker == 0


def test_a_retired_field_names_what_to_set_instead(tmp_path):
    """A field a config class lists in RETIRED (e.g. after a rename) fails with its message, not a bare
    'unknown field'."""
    from dataclasses import dataclass, field
    from typing import ClassVar

    from rl import config_io

    @dataclass
    class Section:
        RETIRED: ClassVar[dict[str, str]] = {"old_name": "renamed to section.new_name; set that instead"}
        new_name: int = 1

    @dataclass
    class Config:
        section: Section = field(default_factory=Section)

    path = tmp_path / "c.yaml"
    path.write_text("section:\n  old_name: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: section.old_name: renamed to section.new_name"):
        config_io.load(Config, path)
    assert config_io.load(Config, None, ["section.new_name=3"]).section.new_name == 3


def test_yaml_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(path)
