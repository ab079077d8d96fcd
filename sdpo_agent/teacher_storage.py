"""A frozen model whose large weights are stored in bfloat16 and computed with in float32.

The EMA or initial-model teacher is a second copy of the policy: in float32 that is 4 bytes
per parameter on top of the policy, its gradients and the optimizer state. Stored compactly
it costs 2. Every module that owns a weight matrix (linear layers, embeddings) gets hooks
that materialise its weights in the compute dtype just for its own call and drop them after,
so the arithmetic stays float32 and at most one module's weights are ever expanded.

Between calls each compact parameter holds a one-element stride-0 stand-in with the right
shape, dtype and device (code that reads ``.shape`` or ``.dtype`` keeps working; nothing is
computed with it because every call materialises first).

The EMA update θ_T ← (1 − λ)·θ_T + λ·θ_S is computed in float32 and stored with *stochastic*
rounding: round-to-nearest would drop every update smaller than half a bfloat16 step (with
λ = 0.05 and a small learning rate, nearly all of them) and freeze the teacher; stochastic
rounding keeps each stored value an unbiased estimate of the float32 EMA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

# Elements per step of the EMA update: its temporaries (1 MiB each) stay in the L2 cache across
# the eight passes; 4M-element chunks streamed each pass through memory, 1.5x slower on CPU.
_CHUNK = 1 << 18


def stochastic_round_to_bfloat16(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """float32 → bfloat16, rounding up with probability equal to the dropped fraction.

    Adding uniform noise to the 16 mantissa bits that bfloat16 drops, then truncating, rounds
    the magnitude up with exactly that probability (the sign bit is untouched).
    """
    return _stochastic_round_(x.detach().clone(), generator)


def _stochastic_round_(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``stochastic_round_to_bfloat16`` that overwrites ``x`` (a contiguous float32 temporary).

    With r uniform on [−2^15, 2^15), adding r + 2^15 adds a uniform u on [0, 2^16)."""
    bits = x.view(torch.int32)
    bits.add_(_random_int16(bits.numel(), x.device, generator)).add_(1 << 15).bitwise_and_(-65536)
    return bits.view(torch.float32).to(torch.bfloat16)


def _random_int16(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """``n`` int16 values uniform over all 2^16 bit patterns: the four 16-bit quarters of int64
    words drawn over the full 64-bit range, a quarter of the generator calls of one per value."""
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)
    return words.view(torch.int16)[:n]


def stand_in(param: Tensor, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Tensor:
    """A one-element stride-0 tensor with ``param``'s shape (and its dtype and device unless given)."""
    return torch.zeros((), dtype=dtype or param.dtype, device=device or param.device).expand(param.shape)


def compact_copy_memo(
    model: nn.Module, storage_dtype: torch.dtype
) -> tuple[dict[int, nn.Parameter], dict[nn.Parameter, Tensor]]:
    """For ``copy.deepcopy(model, memo)``: each weight matrix copied as a stand-in, its value
    already compact (the full-precision copy is never made: its freed pages would stay
    resident in the allocator). Returns (memo, {new parameter: compact value})."""
    memo: dict[int, nn.Parameter] = {}
    initial: dict[nn.Parameter, Tensor] = {}
    for param in model.parameters():
        if param.dim() >= 2 and id(param) not in memo:
            clone = nn.Parameter(stand_in(param), requires_grad=False)
            memo[id(param)] = clone
            initial[clone] = param.detach().to(storage_dtype)
    return memo, initial


class CompactWeights:
    """Stores ``model``'s large parameters in ``storage_dtype``; hooks expand them per call.

    ``initial``: compact values for (some of) the parameters, e.g. from ``compact_copy_memo``.
    """

    def __init__(
        self,
        model: nn.Module,
        storage_dtype: torch.dtype,
        seed: int = 0,
        initial: dict[nn.Parameter, Tensor] | None = None,
    ) -> None:
        self.storage_dtype = storage_dtype
        self.compact: dict[nn.Parameter, Tensor] = {}
        self.compute_dtype: dict[nn.Parameter, torch.dtype] = {}
        self.generator = torch.Generator().manual_seed(seed)
        for module in model.modules():
            # Matrices only: vectors (norm scales, biases) cost nothing and some code paths read
            # norm weights directly instead of calling the module.
            owned = [p for p in module.parameters(recurse=False) if p.dim() >= 2]
            if not owned:
                continue
            for param in owned:
                if param not in self.compact:
                    given = (initial or {}).get(param)
                    self.compact[param] = given if given is not None else param.detach().to(storage_dtype)
                    self.compute_dtype[param] = param.dtype
                    self._release(param, param.device)
            module.register_forward_pre_hook(self._materialise_hook(owned, isinstance(module, nn.Linear)))
            module.register_forward_hook(self._release_hook(owned))

    # -- per-call materialisation ------------------------------------------------------------------
    def full(self, param: nn.Parameter) -> Tensor:
        """``param``'s value in its compute dtype (a new tensor)."""
        return self.compact[param].to(self.compute_dtype[param])

    def _release(self, param: nn.Parameter, device: torch.device) -> None:
        param.data = stand_in(param, self.compute_dtype[param], device)

    def _materialise_hook(self, params: list[nn.Parameter], linear: bool) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            # Under autocast to the storage dtype a linear layer would cast its weight straight
            # back: hand it the stored tensor (the same product, no copies).
            device = params[0].device.type
            as_stored = (
                linear
                and torch.is_autocast_enabled(device)
                and torch.get_autocast_dtype(device) == self.storage_dtype
            )
            for param in params:
                param.data = self.compact[param] if as_stored else self.full(param)

        return hook

    def _release_hook(self, params: list[nn.Parameter]) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            for param in params:
                self._release(param, param.device)

        return hook

    # -- updates -----------------------------------------------------------------------------------
    @torch.no_grad()
    def lerp_(self, param: nn.Parameter, target: Tensor, weight: float) -> None:
        """Stored value ← (1 − weight)·value + weight·target, in float32, stochastically rounded."""
        stored = self.compact[param].view(-1)
        target = target.detach().reshape(-1)
        for start in range(0, stored.numel(), _CHUNK):
            part = slice(start, start + _CHUNK)
            value = stored[part].float().lerp_(target[part].float(), weight)
            stored[part] = _stochastic_round_(value, self._generator_for(value))

    @torch.no_grad()
    def assign(self, param: nn.Parameter, value: Tensor) -> None:
        """Store ``value`` (rounded to nearest: a one-off load, not an accumulation)."""
        self.compact[param].copy_(value.reshape(param.shape).to(self.storage_dtype))

    def _generator_for(self, value: Tensor) -> torch.Generator | None:
        return self.generator if value.device.type == "cpu" else None

    def to(self, device: torch.device | str) -> None:
        """Move the stored weights (call before ``model.to``: a stand-in moved by ``Tensor.to``
        would be expanded to full size)."""
        for param in self.compact:
            self.compact[param] = self.compact[param].to(device)
            self._release(param, self.compact[param].device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.compact.values())


__all__ = ["CompactWeights", "compact_copy_memo", "stochastic_round_to_bfloat16"]
