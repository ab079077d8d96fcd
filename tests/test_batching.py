"""The rollout batch: padded tensors from rollouts, micro-batches, and the flat TRL-named form."""

from __future__ import annotations

import pytest
import torch

from sdpo_agent.rollout.agent_loop import Rollout
from sdpo_agent.rollout.batching import RolloutBatch, Scores, TeacherContext, build_tensors

PAD, EOS = 0, 1


def rollouts() -> list[Rollout]:
    """Four episodes: prompts of 2 and 3 tokens; one truncated completion, one with env tokens."""
    out = []
    for i in range(4):
        r = Rollout(prompt_ids=[5, 6] if i % 2 else [5, 6, 7])
        r.extend([10 + i, 11, EOS] if i != 2 else [12, 13], sampled=True)
        out.append(r)
    out[3].extend([20, 21], sampled=False)
    out[3].extend([22, EOS], sampled=True)
    return out


def scores(n: int = 4) -> Scores:
    return Scores(
        advantages=torch.arange(n, dtype=torch.float32),
        valid=torch.tensor([True] * (n - 1) + [False]),
        rewards=[1.0] * (n - 1) + [None],
    )


def batch(mask_truncated: bool = False) -> RolloutBatch:
    return build_tensors(
        rollouts(), scores(), pad_id=PAD, eos_ids=[EOS], mask_truncated=mask_truncated, device="cpu"
    )


def test_tensors_are_padded_and_masked_as_the_losses_expect():
    b = batch()
    assert b.prompt_ids.tolist() == [[5, 6, 7], [PAD, 5, 6], [5, 6, 7], [PAD, 5, 6]]
    assert b.prompt_mask.tolist() == [[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 1, 1]]
    assert b.completion_ids[3].tolist() == [13, 11, EOS, 20, 21, 22, EOS]
    assert b.completion_ids[2].tolist() == [12, 13, PAD, PAD, PAD, PAD, PAD]
    assert b.completion_attention_mask[2].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert b.completion_mask[3].tolist() == [1, 1, 1, 0, 0, 1, 1]  # env tokens are not trained on
    assert b.valid.dtype == torch.float32 and b.valid.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert b.policy_loss_mask[3].sum() == 0 and b.policy_loss_mask[0].sum() == 3
    assert batch(mask_truncated=True).completion_mask[2].sum() == 0  # no EOS: cut off
    assert b.num_rows == 4 and b.completion_length == 7


def test_split_and_select_cut_every_tensor_the_same_way():
    b = batch()
    b.old_per_token_logps = torch.randn(4, 7)
    b = b.with_teacher(
        TeacherContext(torch.arange(40).view(4, 10), torch.ones(4, 10), torch.tensor([1.0, 0, 1, 0]))
    )
    first, second = b.split(2)
    assert second.num_rows == 2
    for name, value in b.to_dict().items():
        assert value is not None
        torch.testing.assert_close(second.to_dict()[name], value[2:])
        torch.testing.assert_close(first.to_dict()[name], value[:2])
    picked = b.select(torch.tensor([3, 0]))
    assert picked.require_teacher().input_ids[0].tolist() == list(range(30, 40))
    assert picked.advantages.tolist() == [3.0, 0.0]
    with pytest.raises(ValueError, match="does not split into 3 equal steps"):
        b.split(3)


def test_the_flat_form_uses_trls_names_and_round_trips():
    b = batch().with_teacher(TeacherContext(torch.zeros(4, 9), torch.ones(4, 9), torch.ones(4)))
    flat = b.to_dict()
    assert {
        "teacher_input_ids",
        "teacher_attention_mask",
        "self_distillation_mask",
        "completion_mask",
    } <= set(flat)
    back = RolloutBatch.from_dict(flat)
    assert back.require_teacher().input_ids is flat["teacher_input_ids"]
    assert back.completion_ids is b.completion_ids
    plain = RolloutBatch.from_dict(batch().to_dict())
    assert plain.teacher is None and plain.old_per_token_logps is None
    with pytest.raises(ValueError, match="has no field"):
        RolloutBatch.from_dict({**flat, "input_ids": flat["prompt_ids"]})
    with pytest.raises(ValueError, match="needs all of"):
        RolloutBatch.from_dict({**flat, "teacher_attention_mask": None})


def test_a_batch_without_teacher_context_says_who_builds_it():
    with pytest.raises(ValueError, match=r"SDPOTrainer\.extend_batch builds it"):
        batch().require_teacher()
