"""Learner: one DeepSpeed data-parallel rank per Ray actor, running GRPO updates.

The driver creates `learner.num_workers` of these actors, asks rank 0 for a rendezvous address, and
calls `setup()` on all of them, which joins them into one torch.distributed world (gloo on CPU, NCCL
on GPU) and wraps the model in a DeepSpeed engine (ZeRO stage from config). Each step every rank
gets its slice of the rollout batch (`TrainBatch`) and runs:

    old logprobs (no grad; skipped when there is a single update per batch: ratio is then exactly 1)
    ref logprobs (only when grpo.kl_coef > 0; no reference model exists otherwise)
    for epoch, mini-batch: for micro-batch: forward -> rl.grpo.policy_loss (+ KL) -> backward
    optimizer step at each mini-batch boundary (DeepSpeed's gradient accumulation)

The learner divides logits by the sampling temperature so its logprobs are those of the
distribution the rollout engine sampled from. Logprobs and entropies come from rl/learner_logprobs.py,
which projects onto the vocabulary `learner.logits_chunk_tokens` positions at a time.
"""
from __future__ import annotations

import inspect
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rl import grpo
from rl.config import BaseConfig, TrainConfig
from rl.learner_state import (SHARD_BYTES, build_reference, deepspeed_config, load_model, make_optimizer,
                              moe_blocks, save_hf_model, total_parameters, zero3_loading)
from rl.learner_logprobs import LogprobSettings, at, token_logprobs, window_logprobs
from rl.lora import apply_lora, is_lora, save_lora, sync_parameters
from rl.models import device_and_dtype
from rl.types import SFTBatch, TrainBatch
from rl.weight_sync import CollectiveSender, bucket_groups, encode_bucket


def _device() -> str:
    return device_and_dtype()[0].type


class Learner(CollectiveSender):  # the collective weight sync's sender: rl/weight_sync.py
    def __init__(self, cfg: BaseConfig, model_path: str, rank: int, world_size: int):
        """`cfg`: a TrainConfig (GRPO, `train`) or an SFTConfig (`sft_train`)."""
        self.cfg, self.model_path, self.rank, self.world_size = cfg, model_path, rank, world_size
        if _device() == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        threads = cfg.learner.threads or max(1, (os.cpu_count() or 1))
        torch.set_num_threads(threads)

    def rendezvous(self) -> tuple[str, int]:
        """Address and a free port on this node (called on rank 0) for torch.distributed."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return _node_ip(), port

    def setup(self, master_addr: str, master_port: int) -> int:
        """Join the DeepSpeed world and build the engine; returns the number of trainable parameters."""
        import deepspeed

        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        deepspeed.init_distributed(dist_backend="nccl" if _device() == "cuda" else "gloo")
        cfg, lrn = self.cfg, self.cfg.learner
        torch.manual_seed(cfg.run.seed)
        dtype = device_and_dtype(cfg.model.dtype)[1]
        ds_config = self._ds_config(dtype)
        with zero3_loading(ds_config):  # under ZeRO-3 each rank loads only its partition
            model = load_model(self.model_path, dtype)
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.tie_embeddings = bool(getattr(model.config, "tie_word_embeddings", False))
        # Decided once here, not per forward: whether the model class can project only some positions
        # onto the vocabulary, and whether passes share prompts (HF drops the KV cache that sharing
        # needs under gradient checkpointing; the reference model is the same class).
        self.shared_prefix = cfg.learner.shared_prefix and not cfg.model.gradient_checkpointing
        if lrn.zero_stage == 3 and moe_blocks(model):
            # DeepSpeed reduces a ZeRO-3 leaf's (MoE block's) gradients in the block's backward hook, once
            # per forward: the prompt and response forwards before one backward would reduce them twice
            self.shared_prefix = False
        self.logprob_settings = LogprobSettings(
            temperature=cfg.rollout.temperature if isinstance(cfg, TrainConfig) else 1.0,
            chunk_tokens=lrn.logits_chunk_tokens, shared_prefix=self.shared_prefix,
            keeps_logits="logits_to_keep" in inspect.signature(model.forward).parameters)
        if cfg.model.lora_rank:
            if cfg.model.gradient_checkpointing:
                model.enable_input_require_grads()  # checkpointed blocks need an input that wants grad
            model = apply_lora(model, cfg.model)
        self.entropy_coef = cfg.grpo.entropy_coef if isinstance(cfg, TrainConfig) else 0.0
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(trainable, lrn)
        warmup = max(lrn.warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=ds_config)
        # What the weight sync sends: the base model's names, LoRA adapters merged in (rl/lora.py)
        self.sync_params, self.merges = sync_parameters(self.engine.module)
        self.ref_model = None
        if isinstance(cfg, TrainConfig) and cfg.grpo.kl_coef > 0:  # the only case that needs a frozen reference
            self.ref_model = build_reference(self.model_path, dtype, ds_config, _device())
        return total_parameters(model)

    def _ds_config(self, dtype: torch.dtype) -> dict[str, Any]:
        return deepspeed_config(self.cfg.learner, dtype, *self._micro_plan())

    def _micro_plan(self) -> tuple[int, int]:
        """(micro-batch size, micro-batches per optimizer step) for this rank's share of a mini-batch."""
        per_rank = self.cfg.samples_per_step // (self.cfg.learner.mini_batches * self.world_size)
        micro = min(self.cfg.learner.micro_batch_size, per_rank)
        return micro, -(-per_rank // micro)

    # ------------------------------------------------------------------------------------- training
    def _micro_batches(self, batch: TrainBatch, rows: torch.Tensor) -> list[tuple[torch.Tensor, TrainBatch]]:
        """Split `rows` of `batch` into passes of at most `micro_batch_size` rows and (if set)
        `max_tokens_per_micro_batch` padded tokens, rows sorted longest first so that each pass is
        padded only to its own longest row. With `shared_prefix` the length that pads is the
        response's (each pass runs its distinct prompts once, whichever groups its rows are from)."""
        lrn = self.cfg.learner
        lengths = batch.attention_mask.sum(dim=1)
        padded = lengths - batch.prompt_lengths if self.shared_prefix else lengths
        order = rows[torch.argsort(padded[rows], descending=True, stable=True)].tolist()
        passes: list[list[int]] = []
        for i in order:
            if passes and len(passes[-1]) < lrn.micro_batch_size and (
                    not lrn.max_tokens_per_micro_batch
                    or (len(passes[-1]) + 1) * int(padded[passes[-1][0]]) <= lrn.max_tokens_per_micro_batch):
                passes[-1].append(i)  # the pass's first row is its longest
            else:
                passes.append([i])
        out = []
        for p in passes:
            idx = torch.tensor(p)
            width = int(lengths[idx].max())
            out.append((idx, TrainBatch(*(t[idx][:, :width] if t.dim() == 2 else t[idx] for t in batch.tensors()))))
        return out

    @torch.no_grad()
    def _frozen_logprobs(self, model: Any, batch: TrainBatch) -> torch.Tensor:
        """(B, T-1) logprobs of every trained label (0 elsewhere), in passes as training makes them."""
        rows, width = batch.input_ids.shape
        out = torch.zeros(rows, width)  # one column more than (B, T-1): where `index` puts padding
        for idx, mb in self._micro_batches(batch, torch.arange(rows)):
            logprobs, _, index = token_logprobs(model, mb, self.logprob_settings)
            index = torch.where(index >= mb.input_ids.shape[1] - 1, width - 1, index)  # the pass was cut shorter
            out[idx] = out[idx].scatter(1, index, logprobs.cpu())
        return out[:, :-1]

    def train(self, batch: TrainBatch) -> dict[str, float]:
        """All GRPO updates for this rank's share of one rollout batch; returns mean metrics."""
        cfg, g = self.cfg, self.cfg.grpo
        start = time.perf_counter()
        self.engine.train()
        multi_update = cfg.learner.mini_batches > 1 or cfg.learner.epochs > 1
        old_all = self._frozen_logprobs(self.engine, batch) if multi_update else None
        ref_all = self._frozen_logprobs(self.ref_model, batch) if self.ref_model is not None else None
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        count = 0
        index = torch.arange(len(batch.input_ids))
        for _ in range(cfg.learner.epochs):
            for mini_idx in index.chunk(cfg.learner.mini_batches):
                kept = 1 - batch.truncated[mini_idx] if g.mask_truncated else torch.ones(len(mini_idx))
                mini_tokens = (batch.loss_mask[mini_idx, 1:] * kept[:, None]).sum().clamp(min=1)
                passes = self._micro_batches(batch, mini_idx)
                for n, (idx, mb) in enumerate(passes):
                    # The pass count varies with lengths, so the optimizer-step boundary is set here
                    # rather than counted by DeepSpeed from a fixed gradient_accumulation_steps.
                    self.engine.set_gradient_accumulation_boundary(n == len(passes) - 1)
                    loss, mask, metrics = self._pass_loss(idx, mb, old_all, ref_all)
                    # Weight each pass by its share of the mini-batch, so the mini-batch's token-mean
                    # (or sequence-mean) counts every token (sequence) once however the passes split it.
                    weight = mask.sum() / mini_tokens if g.loss_agg == "token-mean" else len(idx) / len(mini_idx)
                    self.engine.backward(loss * weight, scale_wrt_gas=False)
                    if self.engine.is_gradient_accumulation_boundary():
                        grad_norms.append(self._grad_norm())
                    self.engine.step()
                    if grad_norms and grad_norms[-1] != grad_norms[-1]:  # NaN placeholder: ZeRO keeps it
                        grad_norms[-1] = float(self.engine.get_global_grad_norm() or 0.0)
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    count += 1
        out = {k: v / max(count, 1) for k, v in sums.items()}
        if g.mask_truncated:
            out["pg/truncated_masked"] = float(batch.truncated.float().mean())  # share of rows left out
        out["actor/entropy_coef"] = self.entropy_coef
        if g.entropy_target is not None:  # adapt for the next step, from the ranks' mean entropy
            entropy = _rank_mean(out["actor/entropy"], self.world_size)
            self.entropy_coef = grpo.next_entropy_coef(self.entropy_coef, entropy, g.entropy_target,
                                                       g.entropy_coef_lr, g.entropy_coef_max)
        out["actor/grad_norm"] = sum(grad_norms) / len(grad_norms)
        out["actor/lr"] = float(self.engine.get_lr()[0])
        out["time/train_rank"] = time.perf_counter() - start
        out["learner/tokens"] = float(batch.attention_mask.sum())
        out["learner/passes"] = float(count)
        return out

    def _pass_loss(self, idx: torch.Tensor, mb: TrainBatch, old_all: torch.Tensor | None,
                   ref_all: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One pass's GRPO loss (policy loss, KL to the reference, entropy term), its (b, W) loss mask
        and metrics. `old_all`/`ref_all`: (B, T-1) logprobs of the whole batch, or None."""
        cfg, g = self.cfg, self.cfg.grpo
        # the entropy's graph only when the loss uses it
        logprobs, entropy, index = token_logprobs(self.engine, mb, self.logprob_settings,
                                                  entropy="grad" if self.entropy_coef else "value")
        dev = logprobs.device
        sampled = at(mb.loss_mask[:, 1:], index).to(dev).float()  # every token the policy sampled
        mask = sampled  # the tokens trained on
        if g.mask_truncated:  # DAPO's overlong filtering: cut responses teach nothing about the answer
            mask = sampled * (1 - mb.truncated.to(dev).float()).unsqueeze(1)
        old = at(old_all[idx][:, :mb.input_ids.shape[1] - 1], index).to(dev) if old_all is not None \
            else logprobs.detach()
        sequence = g.importance_level == "sequence"
        # (B,) group advantages, or (B, T) per token (on-policy distillation) aligned with input_ids
        adv = mb.advantages if mb.advantages.dim() == 1 else at(mb.advantages[:, 1:], index)
        loss, metrics = grpo.policy_loss(
            logprobs, old, adv.to(dev), mask, clip_low=g.seq_clip_low if sequence else g.clip_low,
            clip_high=g.seq_clip_high if sequence else g.clip_high, loss_agg=g.loss_agg,
            max_tokens=cfg.rollout.max_new_tokens, importance_level=g.importance_level,
            behavior_logprobs=at(mb.behavior_logprobs[:, 1:], index).to(dev) if g.tis_cap else None,
            tis_cap=g.tis_cap, kl_cov_ratio=g.kl_cov_ratio, kl_cov_coef=g.kl_cov_coef)
        metrics["loss/pg"] = loss.detach()
        if ref_all is not None:
            ref = at(ref_all[idx][:, :mb.input_ids.shape[1] - 1], index).to(dev)
            kl = grpo.kl_loss(logprobs, ref, mask, estimator=g.kl_estimator, loss_agg=g.loss_agg,
                              max_tokens=cfg.rollout.max_new_tokens)
            loss = loss + g.kl_coef * kl
            metrics["loss/kl"] = kl.detach()
        if self.entropy_coef:
            bonus = grpo.agg_loss(entropy, mask, g.loss_agg, cfg.rollout.max_new_tokens)
            loss = loss - self.entropy_coef * bonus
            metrics["loss/entropy_bonus"] = bonus.detach()
        # the policy's entropy on what it sampled (also the truncated responses the loss leaves out)
        metrics["actor/entropy"] = (entropy.detach() * sampled).sum() / sampled.sum().clamp(min=1)
        return loss, mask, metrics

    def sft_train(self, batch: SFTBatch) -> dict[str, float]:
        """One optimizer step of supervised fine-tuning (`rl sft`) on this rank's share of a batch:
        cross-entropy on the tokens where loss_mask is 1, averaged over those tokens (token-mean).

        Logits are not divided by the sampling temperature: this is the data's likelihood. The batch
        splits into exactly the micro-batches DeepSpeed accumulates (`_micro_plan` with
        samples_per_step = sft.batch_size), so the last one is the optimizer-step boundary.
        """
        start = time.perf_counter()
        self.engine.train()
        dev = _device()
        micro, gas = self._micro_plan()
        total = batch.loss_mask[:, 1:].sum().clamp(min=1)   # trained tokens on this rank
        nll_sum, grad_norms = 0.0, []
        for idx in torch.arange(len(batch.input_ids)).split(micro):
            mb = batch.select(idx)
            logprobs, _, index = window_logprobs(self.engine, mb.input_ids, mb.attention_mask, mb.loss_mask,
                                                 replace(self.logprob_settings, temperature=1.0))  # (b, W)
            nll = -(logprobs * at(mb.loss_mask[:, 1:], index).to(dev)).sum()
            # DeepSpeed divides by `gas`; scale so the step's gradient is that of the token mean.
            self.engine.backward(nll / total.to(dev) * gas)
            if self.engine.is_gradient_accumulation_boundary():
                grad_norms.append(self._grad_norm())
            self.engine.step()
            if grad_norms and grad_norms[-1] != grad_norms[-1]:  # NaN placeholder: ZeRO keeps it
                grad_norms[-1] = float(self.engine.get_global_grad_norm() or 0.0)
            nll_sum += float(nll.detach())
        if len(grad_norms) != 1:
            raise RuntimeError(f"sft_train took {len(grad_norms)} optimizer steps for one batch of {len(batch.input_ids)} "
                               f"rows (micro {micro} x {gas}); every rank needs sft.batch_size / learner.num_workers rows")
        return {"loss/sft": nll_sum / float(total), "sft/tokens": float(total), "actor/grad_norm": grad_norms[0],
                "actor/lr": float(self.engine.get_lr()[0]), "time/train_rank": time.perf_counter() - start}

    def _grad_norm(self) -> float:
        """Global gradient norm before clipping. ZeRO 1-3 optimizers compute it during the step (read
        afterwards); with stage 0 DeepSpeed does not keep it, so compute it from the full gradients."""
        if self.cfg.learner.zero_stage > 0:
            return float("nan")  # filled in after the step, see train()
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    @torch.no_grad()
    def logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """(B, T-1) logprobs of the current policy (tests compare them with the rollout engine's)."""
        self.engine.eval()
        return self._frozen_logprobs(self.engine, batch).cpu()

    # ------------------------------------------------------------------------------- weights, state
    def named_weights(self, dtype: str | None = None) -> list[tuple[str, torch.Tensor]] | None:
        """Full weights as CPU tensors (copies) on rank 0 (None elsewhere). Every rank must call it:
        under ZeRO-3 the parameters are gathered collectively, a checkpoint shard's worth at a time."""
        buckets = [self._gather_bucket(group, dtype) for group in self._bucket_groups(dtype, SHARD_BYTES)]
        return [t for bucket in buckets for t in bucket] if self.rank == 0 else None

    def weight_bucket_count(self, dtype: str | None, bucket_mb: float) -> int:
        return len(self._bucket_groups(dtype, bucket_mb * 2**20))

    def weight_bucket(self, index: int, dtype: str | None, bucket_mb: float) -> list | None:
        """The weight sync's sender: bucket `index` of about `bucket_mb` MB of weights cast to `dtype`,
        encoded for Ray's object store (rl/weight_sync.py `encode_bucket`), on rank 0; None on the other
        ranks, which must make the same calls (ZeRO-3 gathers each bucket collectively). The driver
        asks for every bucket at once and the rollout workers fetch them as they come, so copying
        bucket i + 1 here overlaps loading bucket i there, and no process holds a second full copy."""
        group = self._bucket_groups(dtype, bucket_mb * 2**20)[index]
        # copy=False: the return value is copied into the object store anyway, so views will do
        bucket = self._gather_bucket(group, dtype, copy=False)
        return encode_bucket(bucket) if bucket is not None else None

    def _bucket_groups(self, dtype: str | None, bucket_bytes: float) -> list[list[tuple[str, Any]]]:
        return bucket_groups(self.sync_params, dtype, bucket_bytes)

    def _gather_bucket(self, group: list[tuple[str, Any]], dtype: str | None, copy: bool = True,
                       device: str | torch.device = "cpu") -> list[tuple[str, torch.Tensor]] | None:
        """One group's full weights as (name, tensor) pairs on `device` cast to `dtype` on rank 0 (None on
        the others); copy=False may return views of the live parameters (on their device, no cast)."""
        import deepspeed

        cast = getattr(torch, dtype) if dtype else None
        with deepspeed.zero.GatheredParameters([p for _, p in group], enabled=self.cfg.learner.zero_stage == 3):
            if self.rank != 0:
                return None
            bucket = []
            for name, p in group:
                if name in self.merges:  # LoRA: the adapter merged in (fp32) before the cast; a new tensor
                    bucket.append((name, self.merges[name](p.detach()).to(device, dtype=cast or p.dtype)))
                else:
                    bucket.append((name, p.detach().to(device, dtype=cast or p.dtype, copy=copy)))
        names = [name for name, _ in bucket]
        if self.tie_embeddings and "model.embed_tokens.weight" in names and not any(
                n == "lm_head.weight" for n, _ in self.sync_params):
            # named_parameters() lists a tied matrix once; vLLM keeps a separate lm_head copy after
            # loading, which stays stale unless the tied weight is also sent under its own name
            bucket.append(("lm_head.weight", bucket[names.index("model.embed_tokens.weight")][1]))
        return bucket

    def save(self, path: str, client_state: dict[str, Any]) -> None:
        """DeepSpeed state (model, optimizer, scheduler) + an HF model folder for use elsewhere."""
        from transformers import AutoTokenizer

        ckpt = Path(path)
        if self.cfg.checkpoint.save_optimizer:
            self.engine.save_checkpoint(str(ckpt / "deepspeed"), tag="state", client_state=client_state)
        if is_lora(self.engine.module):  # ZeRO 0-2 only (config.py refuses LoRA with ZeRO-3): weights are whole
            if self.rank == 0:
                save_lora(self.engine.module, ckpt, self.model_path)  # adapter/ and the merged model/
            return
        # every rank takes part: under ZeRO-3 each shard file's parameters are gathered in turn
        save_hf_model(self.engine.module, ckpt / "model", self.rank, zero3=self.cfg.learner.zero_stage == 3)
        if self.rank == 0:
            AutoTokenizer.from_pretrained(self.model_path).save_pretrained(ckpt / "model")

    def load(self, path: str) -> dict[str, Any]:
        """Restore model, optimizer and scheduler state saved by `save`; returns the client state."""
        state_dir = Path(path) / "deepspeed"
        if not state_dir.exists():
            raise FileNotFoundError(f"checkpoint {path} has no DeepSpeed state (saved with "
                                    "checkpoint.save_optimizer=false?); cannot resume exactly from it")
        _, client_state = self.engine.load_checkpoint(str(state_dir), tag="state")
        return client_state or {}


def _rank_mean(value: float, world_size: int) -> float:
    """`value` averaged over the learner ranks (so every rank adapts the same coefficient)."""
    if world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t) / world_size


def _node_ip() -> str:
    import ray

    # outside Ray (a learner used in-process by a unit test) every rank is on this host
    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
