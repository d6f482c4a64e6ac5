"""Config loading: YAML mirrors the dataclasses; bad fields fail naming the field."""
from pathlib import Path

import pytest

from rl.cli import split_overrides
from rl.config import ConfigError, TrainConfig, load_config
from tests.helpers import ROOT

# sft_*.yaml are `rl sft` configs, loaded by load_config(kind=SFTConfig) (tests/test_sft.py checks them);
# recipe_tiny.yaml is an `rl recipe` config (tests/rl/test_recipe.py checks it and the configs it names)
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml")
                 if not p.name.startswith("sft_") and p.name != "recipe_tiny.yaml")


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


@pytest.mark.parametrize("algo", ["grpo", "dapo", "dr_grpo", "gspo"])
def test_every_loss_preset_loads_and_explicit_overrides_win(algo):
    from rl.cli import algo_overrides

    cfg = load_config("configs/tiny.yaml", algo_overrides(algo) + ["grpo.kl_coef=0.0"])
    assert cfg.grpo.kl_coef == 0.0  # given after the preset, so it wins
    assert (cfg.grpo.importance_level == "sequence") == (algo == "gspo")
    assert cfg.grpo.normalize_std == (algo != "dr_grpo")


def test_a_preset_sets_only_the_grpo_section(tmp_path):
    from rl.cli import algo_overrides

    with pytest.raises(ConfigError, match="choose one of"):
        algo_overrides("ppo")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {clip_low: 0.1}\nlearner: {lr: 1.0}\n")
    with pytest.raises(ConfigError, match=r"a preset sets only \['grpo'\], not \['learner'\]"):
        algo_overrides(str(bad))


@pytest.mark.parametrize("override, message", [
    ("grpo.kl_cov_ratio=1.5", "kl_cov_ratio is a share of tokens"),
    ("grpo.entropy_target=-1", "grpo.entropy_target must be a finite number >= 0"),
    ("grpo.seq_clip_low=1.0", "seq_clip_low must be in"),
    ("grpo.clip_high=.nan", "must be a finite number"),
    ("model.lora_rank=-1", "model.lora_rank must be a finite number >= 0"),
    ("learner.max_tokens_per_micro_batch=-1", "max_tokens_per_micro_batch must be a finite number >= 0"),
    ("learner.lr=-1e-5", "learner.lr must be a finite number >= 0"),
    ("learner.lr=0", "learner.lr must be a positive number"),
    ("rollout.temperature=.nan", "rollout.temperature must be a finite number >= 0, got nan"),
    ("rollout.temperature=0", "rollout.temperature must be a number > 0"),
    ("rollout.top_p=1.5", "rollout.top_p and rollout.gpu_memory_utilization are fractions"),
    ("rollout.kv_cache_gb=0", "rollout.kv_cache_gb > 0"),
    ("learner.weight_decay=.nan", "learner.weight_decay must be a finite number >= 0, got nan"),
    ("reward.timeout_s=.inf", "reward.timeout_s must be a finite number >= 0, got inf"),
    ("rollout.cpus_per_worker=-1", "rollout.cpus_per_worker must be a finite number >= 0"),
    ("grpo.entropy_coef=-0.1", "grpo.entropy_coef must be a finite number >= 0"),
    ("learner.betas=[0.9, .nan]", r"learner.betas must be a finite number >= 0, got \(0.9, nan\)"),
    ("learner.betas=[0.9, 1.5]", r"learner.betas are AdamW's decay rates, each in \[0, 1\)"),
    ("judge.micro_batch_size=-4", "judge.micro_batch_size must be a finite number >= 0"),
])
def test_numbers_are_range_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/tiny.yaml", [override])


def test_lora_with_zero3_is_refused():
    with pytest.raises(ConfigError, match="zero_stage=3 is not supported"):
        load_config("configs/tiny.yaml", ["model.lora_rank=8", "learner.zero_stage=3"])
