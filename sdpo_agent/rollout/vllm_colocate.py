"""``VLLMColocateGenerator``: generation through an in-process vLLM engine that holds the policy.

One engine per process (each ``accelerate`` process builds its own), created on the first
batch from a ``save_pretrained`` copy of the policy, so it starts with exactly the weights being
trained. Before each batch the weights are pushed if the optimizer step changed since the last
push (``reload_weights`` through ``collective_rpc``: the route that works on vLLM's CPU backend
too, where ``model_runner.model.load_weights`` does not), then the prefix cache is reset.

Prompts go in as token ids, so multi-turn episodes stay token-exact; each row has its own seed
(``row_seeds``); completions are cut after the first EOS as the other backends do. Each call
also leaves the sampled tokens' log-probs in ``last_logprobs`` and, when ``support_topk`` is set,
the top-k log-probs per position in ``last_support`` -- when vLLM's log-probs are the policy's
log softmax(z / T) (``logprobs_mode``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import SamplingSettings
from .vllm_common import (
    SampledRow,
    VLLMBackend,
    cut_row,
    plain_sampling,
    require_vllm,
    sampling_fields,
    weights_version,
)

logger = logging.getLogger(__name__)

_MIN_KV_CACHE_BYTES = 32 * 2**20


def max_model_len(args: SamplingSettings, config: Any) -> int:
    """The longest sequence the engine must hold: ``vllm_max_model_length``, else prompt plus
    completion budget (prompts are cut to ``max_prompt_length``; every turn of an episode shares
    the completion budget), else the model's own context."""
    own = getattr(config, "max_position_embeddings", None) or 2048
    if args.vllm_max_model_length:
        return args.vllm_max_model_length
    if args.max_prompt_length and args.max_completion_length:
        return min(own, args.max_prompt_length + args.max_completion_length)
    return own


def kv_cache_bytes(config: Any, dtype: torch.dtype, sequences: int, tokens_per_sequence: int) -> int:
    """CPU KV cache for ``sequences`` rows of ``tokens_per_sequence``, with a quarter more room."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * heads * head_dim * torch.empty((), dtype=dtype).element_size()
    return max(_MIN_KV_CACHE_BYTES, math.ceil(1.25 * per_token * max(1, sequences) * tokens_per_sequence))


class VLLMColocateGenerator(VLLMBackend):
    """``GenerationBackend`` over ``vllm.LLM`` in this process; see the module docstring."""

    def __init__(
        self,
        model_getter: Callable[[], torch.nn.Module],
        tokenizer: Any,
        args: SamplingSettings,
        eos_token_ids: Sequence[int],
        *,
        version_getter: Callable[[], Any] | None = None,
        seed: int = 0,
        max_num_seqs: int = 256,
    ) -> None:
        require_vllm()
        if args.vllm_enable_sleep_mode and not torch.cuda.is_available():
            raise ValueError(
                "vllm_enable_sleep_mode=True needs a GPU: vLLM's CPU backend has no sleep mode (set it to False)"
            )
        super().__init__(
            model_getter, tokenizer, args, eos_token_ids, version_getter=version_getter, seed=seed
        )
        self.max_num_seqs = max_num_seqs
        self._engine = _EngineState()  # shared with the views made by ``with_settings``

    # -- the engine --------------------------------------------------------------------------------
    @property
    def weight_pushes(self) -> int:
        return self._engine.pushes

    @property
    def llm(self) -> Any:
        if self._engine.llm is None:
            self._engine.llm = self._build_engine()
        return self._engine.llm

    def _build_engine(self) -> Any:
        model = self._model_getter()
        if hasattr(model, "peft_config"):
            raise NotImplementedError(
                "use_vllm=True with a PEFT model is not supported yet; merge the adapter first"
            )
        model_dir = self._engine.model_dir = tempfile.mkdtemp(prefix="sdpo-vllm-")
        model.save_pretrained(model_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(model_dir)
        self._engine.device = next(model.parameters()).device
        self._engine.logprobs_mode = logprobs_mode(self.args.temperature)
        cpu = not torch.cuda.is_available()
        dtype = next(model.parameters()).dtype
        length = max_model_len(self.args, model.config)
        if cpu:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine runs in this process
        from vllm import LLM  # optional dependency, imported once the engine is wanted

        # Several trainer processes (vLLM's own single-process group does not count).
        distributed = (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        )
        kwargs: dict[str, Any] = {
            "model": model_dir,
            "dtype": str(dtype).removeprefix("torch."),
            "seed": self.seed,
            "max_model_len": length,
            "max_num_seqs": self.max_num_seqs,
            "tensor_parallel_size": self.args.vllm_tensor_parallel_size,
            "gpu_memory_utilization": self.args.vllm_gpu_memory_utilization,
            "model_impl": self.args.vllm_model_impl,
            "enable_sleep_mode": self.args.vllm_enable_sleep_mode,
            "enable_prefix_caching": True,
            "logprobs_mode": self._engine.logprobs_mode,
            "max_logprobs": -1,
            "generation_config": "vllm",  # our sampling fields, not the checkpoint's defaults
            "enforce_eager": cpu,
        }
        if cpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            # A generation batch's worth (vLLM's CPU default is 4 GiB, whatever the model).
            kwargs["kv_cache_memory_bytes"] = kv_cache_bytes(model.config, dtype, self.max_num_seqs, length)
        if distributed or self.args.vllm_tensor_parallel_size > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"  # one engine per trainer process
        # vLLM's CPU worker replaces torch.set_num_threads with a no-op for the whole process;
        # training shares this process, so the thread count and the function are put back.
        threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads
        try:
            llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types; the message says which model failed
            raise RuntimeError(f"vLLM could not load the policy ({type(model).__name__}): {exc}") from exc
        finally:
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(threads)
        self._engine.synced_version, self._engine.synced_weights = (
            self._version_getter(),
            weights_version(model),
        )
        return llm

    def push_weights(self) -> None:
        """Load the policy's current weights into the engine and drop cached prefixes."""
        model = self._model_getter()
        weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
        self._engine.pushes += 1

    def start(self) -> None:
        """Build the engine now (as TRL does at trainer construction), not on the first batch:
        a model vLLM cannot load fails here, and the start-up is not charged to a training step."""
        _ = self.llm

    def _sync(self) -> None:
        """Push when the optimizer step moved, or any parameter was written in place since the
        last push (weights loaded after the engine started, a resumed checkpoint)."""
        version = self._version_getter()
        if self._engine.llm is None:
            self._engine.llm = self._build_engine()
            return
        written = weights_version(self._model_getter())
        if version != self._engine.synced_version or written != self._engine.synced_weights:
            self.push_weights()
            self._engine.synced_version, self._engine.synced_weights = version, written

    # -- sampling ----------------------------------------------------------------------------------
    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        self.last_support, self.last_logprobs = None, []
        if not prompt_ids:
            return []
        if max_new_tokens < 1:
            return [[] for _ in prompt_ids]
        if self.args.vllm_enable_sleep_mode and self._engine.llm is not None:
            self._engine.llm.wake_up()  # weights back on the GPU, KV cache reallocated
        self._sync()
        rows, k = self._sample(prompt_ids, max_new_tokens)
        if self.args.vllm_enable_sleep_mode:
            self._engine.llm.sleep(level=1)  # weights to host memory, KV cache freed, for the train step
        return self.keep(rows, k, self._engine.device)

    def _sample(
        self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int
    ) -> tuple[list[SampledRow], int]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        fields = sampling_fields(self.args, max_new_tokens, self.eos_ids)
        exact = self._engine.logprobs_mode == "raw_logprobs" or plain_sampling(fields)
        k = self.support_topk if exact else 0
        seeds = self.next_seeds(len(prompt_ids))
        params = [SamplingParams(**fields, seed=s, logprobs=k, detokenize=False) for s in seeds]
        prompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [self._parse(output.outputs[0], max_new_tokens) for output in outputs], k

    def _parse(self, completion: Any, max_new_tokens: int) -> SampledRow:
        token_ids = list(completion.token_ids)
        logprobs = completion.logprobs or [{} for _ in token_ids]
        token_logprobs = [float(lp[t].logprob) if t in lp else math.nan for t, lp in zip(token_ids, logprobs)]
        top = [{tok: float(v.logprob) for tok, v in lp.items()} for lp in logprobs]
        return cut_row(token_ids, token_logprobs, top, self.eos_ids, max_new_tokens)

    def close(self) -> None:
        """Free the engine and its saved weights (a later batch builds a new one)."""
        self._engine.close()


def logprobs_mode(temperature: float) -> str:
    """Which log-probs the engine reports: the loss wants the policy's log softmax(z / T) with no
    other processor applied. At T = 1 those are vLLM's raw log-probs, whatever top-p, penalties or
    min_new_tokens shape the draw; otherwise the processed ones are, with temperature-only sampling."""
    return "raw_logprobs" if temperature == 1.0 else "processed_logprobs"


class _EngineState:
    """The engine, the folder it loaded from, and which weights version it holds."""

    def __init__(self) -> None:
        self.llm: Any = None
        self.model_dir: str | None = None
        self.synced_version: Any = None
        self.synced_weights = -1
        self.pushes = 0
        self.device = torch.device("cpu")
        self.logprobs_mode = "processed_logprobs"

    def close(self) -> None:
        self.llm = None
        if self.model_dir is not None:
            shutil.rmtree(self.model_dir, ignore_errors=True)
            self.model_dir = None

    def __del__(self) -> None:
        self.close()


__all__ = ["VLLMColocateGenerator", "kv_cache_bytes", "max_model_len"]
