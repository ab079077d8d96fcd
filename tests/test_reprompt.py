"""sdpo_agent.reprompt: the teacher-reprompt rules, one by one, and teacher tokenisation."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from sdpo_agent.config import (
    DEFAULT_FEEDBACK_TEMPLATE,
    DEFAULT_REPROMPT_TEMPLATE,
    DEFAULT_SOLUTION_TEMPLATE,
    RepromptSettings,
    SDPOConfig,
)
from sdpo_agent.reprompt import (
    build_teacher_messages,
    remove_thinking,
    reprompt_metrics,
    tokenize_teacher_prompts,
)

DEFAULTS = RepromptSettings()
SHORT = RepromptSettings(
    reprompt_template="{prompt}|{solution}|{feedback}",
    solution_template="S[{successful_previous_attempt}]",
    feedback_template="F[{feedback_raw}]",
)


def settings(**overrides) -> RepromptSettings:
    return dataclasses.replace(SHORT, **overrides)


def build(rewards, *, prompts=None, completions=None, feedbacks=None, g=None, args=SHORT, **kw):
    n = len(rewards)
    g = g or n
    prompts = prompts if prompts is not None else [f"P{i // g}" for i in range(n)]
    completions = completions if completions is not None else [f"c{i}" for i in range(n)]
    return build_teacher_messages(
        prompts, completions, rewards, feedbacks, num_generations=g, args=args, **kw
    )


# --------------------------------------------------------------------- settings


def test_settings_defaults_are_the_reference_sdpo_config_defaults():
    assert DEFAULTS.success_reward_threshold == 1.0
    assert DEFAULTS.dont_reprompt_on_self_success is True
    assert DEFAULTS.use_successful_as_teacher is True
    assert DEFAULTS.include_environment_feedback is False
    assert DEFAULTS.environment_feedback_only_without_solution is False
    assert DEFAULTS.remove_thinking_from_demonstration is False
    assert DEFAULTS.max_reprompt_len == 10240
    assert (
        DEFAULT_REPROMPT_TEMPLATE
        == "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
    )
    assert DEFAULT_SOLUTION_TEMPLATE == "\nCorrect solution:\n\n{successful_previous_attempt}\n\n"
    assert DEFAULT_FEEDBACK_TEMPLATE == (
        "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback_raw}\n\n"
    )
    config = SDPOConfig(output_dir="unused")  # the trainer's fields are the same ones
    assert {f.name: getattr(config, f.name) for f in dataclasses.fields(RepromptSettings)} == (
        dataclasses.asdict(DEFAULTS)
    )


# ------------------------------------------------------------ demonstration choice


def test_lowest_index_successful_sibling_is_the_demonstration():
    prompts, mask = build([0.0, 1.0, 0.0, 1.0])
    assert prompts == ["P0|S[c1]|", "P0|S[c3]|", "P0|S[c1]|", "P0|S[c1]|"]
    assert mask == [1.0, 1.0, 1.0, 1.0]


def test_self_is_a_candidate_when_not_excluded():
    prompts, _ = build([0.0, 1.0, 0.0, 1.0], args=settings(dont_reprompt_on_self_success=False))
    assert prompts == ["P0|S[c1]|"] * 4


def test_lone_success_gets_no_demonstration():
    prompts, mask = build([0.0, 0.0, 1.0, 0.0])
    assert prompts == ["P0|S[c2]|", "P0|S[c2]|", "P0", "P0|S[c2]|"]
    assert mask == [1.0, 1.0, 0.0, 1.0]


def test_no_demonstrations_when_successful_rollouts_are_not_teachers():
    prompts, mask = build([1.0, 1.0, 0.0], args=settings(use_successful_as_teacher=False))
    assert prompts == ["P0", "P0", "P0"]
    assert mask == [0.0, 0.0, 0.0]


def test_threshold_is_inclusive_and_configurable():
    _, mask = build([0.5, 0.49, 0.0], args=settings(success_reward_threshold=0.5))
    assert mask == [0.0, 1.0, 1.0]  # 0.5 counts; 0.49 does not; sample 0 is the lone success
    _, mask = build([0.99, 0.0], args=DEFAULTS)
    assert mask == [0.0, 0.0]


def test_missing_rewards_are_never_successes():
    _, mask = build([None, 0.0, None])
    assert mask == [0.0, 0.0, 0.0]
    prompts, mask = build(torch.tensor([float("nan"), 1.0, 0.0]))
    assert mask == [1.0, 0.0, 1.0]
    assert prompts[0] == "P0|S[c1]|"


def test_groups_are_independent():
    prompts, mask = build([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], g=3)
    assert prompts == ["P0", "P0|S[c0]|", "P0|S[c0]|", "P1", "P1", "P1"]
    assert mask == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_rewards_may_be_a_tensor():
    by_list = build([0.0, 1.0, 1.0])
    by_tensor = build(torch.tensor([0.0, 1.0, 1.0]))
    assert by_list == by_tensor


# ------------------------------------------------------------------- feedback


FEEDBACK_CASES = [
    # include, only_without_solution, rewards, feedback, expected prompt of sample 0, mask of sample 0
    (False, False, [0.0, 0.0], "bad", "P0", 0.0),
    (True, False, [0.0, 0.0], "bad", "P0||F[bad]", 1.0),
    (True, False, [0.0, 1.0], "bad", "P0|S[c1]|F[bad]", 1.0),
    (True, True, [0.0, 1.0], "bad", "P0|S[c1]|", 1.0),
    (True, True, [0.0, 0.0], "bad", "P0||F[bad]", 1.0),
    (True, False, [0.0, 0.0], " \n\t", "P0", 0.0),
    (True, False, [0.0, 0.0], "", "P0", 0.0),
    (True, False, [0.0, 0.0], None, "P0", 0.0),
]


@pytest.mark.parametrize(
    ("include", "only_without", "rewards", "feedback", "expected", "mask0"), FEEDBACK_CASES
)
def test_feedback_rules(include, only_without, rewards, feedback, expected, mask0):
    args = settings(
        include_environment_feedback=include, environment_feedback_only_without_solution=only_without
    )
    prompts, mask = build(rewards, feedbacks=[feedback, None], args=args)
    assert prompts[0] == expected
    assert mask[0] == mask0


def test_shared_privileged_context_is_used_for_a_lone_success():
    # As in the reference, a row-level privileged_context also reaches the successful sample.
    args = settings(include_environment_feedback=True)
    prompts, mask = build([1.0, 0.0], feedbacks=["ctx", "ctx"], args=args)
    assert prompts == ["P0||F[ctx]", "P0|S[c0]|F[ctx]"]
    assert mask == [1.0, 1.0]


def test_successful_rollouts_give_no_per_rollout_feedback():
    args = settings(include_environment_feedback=True)
    prompts, mask = build(
        [1.0, 0.0], feedbacks=["passed all tests", "failed test 3"], args=args, per_rollout_feedback=True
    )
    assert prompts == ["P0", "P0|S[c0]|F[failed test 3]"]
    assert mask == [0.0, 1.0]


def test_feedbacks_may_be_none_altogether():
    prompts, mask = build([0.0, 1.0], feedbacks=None, args=settings(include_environment_feedback=True))
    assert prompts == ["P0|S[c1]|", "P0"]
    assert mask == [1.0, 0.0]


# -------------------------------------------------------------- demonstration text


def test_remove_thinking_is_non_greedy_and_strips():
    assert remove_thinking("<think>a</think> keep <think>b\nc</think>\n") == "keep"
    assert remove_thinking("  no tags  ") == "no tags"
    assert remove_thinking("<think>\nmulti\nline\n</think>answer") == "answer"


def test_thinking_removed_from_demonstration_only_when_asked():
    completions = ["c0", "<think>hmm</think>  42 "]
    prompts, _ = build(
        [0.0, 1.0], completions=completions, args=settings(remove_thinking_from_demonstration=True)
    )
    assert prompts[0] == "P0|S[42]|"
    prompts, _ = build([0.0, 1.0], completions=completions)
    assert prompts[0] == "P0|S[<think>hmm</think>  42 ]|"


def test_literal_braces_survive_substitution():
    prompt = "Compute f({x}) where {y} = {0}"
    demo = "def f(x): return {'a': {x}}  # {successful_previous_attempt}"
    feedback = "KeyError: '{feedback_raw}' {prompt}"
    prompts, _ = build(
        [0.0, 1.0],
        prompts=[prompt, prompt],
        completions=["wrong", demo],
        feedbacks=[feedback, None],
        args=dataclasses.replace(DEFAULTS, include_environment_feedback=True),
    )
    expected = (
        prompt
        + "\nCorrect solution:\n\n"
        + demo
        + "\n\n"
        + "\nThe following is feedback from your unsuccessful earlier attempt:\n\n"
        + feedback
        + "\n\n"
        + "\n\nCorrectly solve the original question.\n"
    )
    assert prompts[0] == expected


def test_default_templates_produce_the_reference_text():
    prompts, _ = build(
        [0.0, 1.0], prompts=["Solve 2+2.", "Solve 2+2."], completions=["5", "4"], args=DEFAULTS
    )
    assert prompts[0] == "Solve 2+2.\nCorrect solution:\n\n4\n\n\n\nCorrectly solve the original question.\n"


def test_args_may_be_any_object_with_the_fields():
    args = SimpleNamespace(**dataclasses.asdict(SHORT))
    assert build([0.0, 1.0], args=args) == build([0.0, 1.0])


# ------------------------------------------------------------------ chat prompts


def test_chat_prompt_keeps_earlier_messages_and_replaces_the_last_user_turn():
    system = {"role": "system", "content": "be terse {not a field}"}
    chat = [
        system,
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "?"},
        {"role": "user", "content": "Q"},
    ]
    prompts, mask = build([0.0, 1.0], prompts=[chat, chat])
    teacher = prompts[0]
    assert teacher[:3] == chat[:3]
    assert teacher[0] is system
    assert teacher[3] == {"role": "user", "content": "Q|S[c1]|"}
    assert len(teacher) == 4
    assert prompts[1] is chat  # masked out: the original prompt, untouched
    assert chat[-1]["content"] == "Q"  # the input was not mutated
    assert mask == [1.0, 0.0]


def test_list_content_text_parts_are_joined_with_spaces():
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at"},
                {"type": "image", "url": "x.png"},
                {"type": "text", "text": "this"},
            ],
        }
    ]
    prompts, _ = build([0.0, 1.0], prompts=[chat, chat])
    assert prompts[0] == [{"role": "user", "content": "look at this|S[c1]|"}]


@pytest.mark.parametrize("role", ["assistant", "tool", "system"])
def test_chat_prompt_must_end_with_a_user_turn(role):
    chat = [{"role": "user", "content": "Q"}, {"role": role, "content": "prefill"}]
    with pytest.raises(ValueError, match="user turn"):
        build([0.0, 1.0], prompts=[chat, chat])


def test_input_validation():
    with pytest.raises(ValueError):
        build_teacher_messages(["a", "b"], ["x"], [0.0, 1.0], None, num_generations=2, args=SHORT)
    with pytest.raises(ValueError):
        build_teacher_messages(["a"] * 3, ["x"] * 3, [0.0] * 3, None, num_generations=2, args=SHORT)
    with pytest.raises(ValueError):
        build_teacher_messages([], [], [], None, num_generations=0, args=SHORT)


def test_metrics_count_like_the_reference():
    args = settings(include_environment_feedback=True, environment_feedback_only_without_solution=True)
    rewards = [1.0, 0.0, 0.0, 0.0]
    feedbacks = ["a", " ", "b", None]
    _, mask = build(rewards, feedbacks=feedbacks, g=2, args=args)
    metrics = reprompt_metrics(rewards, feedbacks, mask, num_generations=2, args=args)
    assert mask == [1.0, 1.0, 1.0, 0.0]
    assert metrics == {
        "self_distillation/success_group_fraction": 0.5,
        "self_distillation/success_sample_fraction": 0.25,
        "self_distillation/feedback_available_fraction": 0.5,
        "self_distillation/feedback_used_fraction": 0.5,
        "self_distillation/reprompt_sample_fraction": 0.75,
    }


# ------------------------------------------------------------------ tokenisation

WORDS = [
    "<pad>",
    "<bos>",
    "<eos>",
    "<unk>",
    "<user>",
    "<assistant>",
    "<system>",
    "<think>",
    "a",
    "b",
    "c",
    "d",
    "e",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% if enable_thinking %}<think> {% endif %}{% endif %}"
)
ID = {w: i for i, w in enumerate(WORDS)}


def make_tokenizer(pad: bool = True) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer that prepends <bos> to plain text, built offline."""
    backend = Tokenizer(models.WordLevel(vocab=ID, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", ID["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>" if pad else None,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    )


def ids(text: str) -> list[int]:
    return [ID[w] for w in text.split()]


def completions_block():
    completion_ids = torch.tensor([[ID["d"], ID["e"], ID["<pad>"]], [ID["e"], ID["e"], ID["d"]]])
    completion_mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    return completion_ids, completion_mask


def test_text_prompts_get_default_special_tokens_and_left_padding():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    out = tokenize_teacher_prompts(["a b c", "a"], cids, cmask, tok, max_reprompt_len=100)
    assert out.prompt_length == 4
    assert out.input_ids.tolist() == [
        ids("<bos> a b c") + ids("d e <pad>"),
        ids("<pad> <pad> <bos> a") + ids("e e d"),
    ]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1]]
    assert out.input_ids.dtype == torch.long
    assert out.attention_mask.dtype == cmask.dtype


def test_chat_prompts_use_the_template_with_a_generation_prompt():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    chats = [
        [{"role": "system", "content": "a"}, {"role": "user", "content": "b c"}],
        [{"role": "user", "content": "d"}],
    ]
    out = tokenize_teacher_prompts(chats, cids, cmask, tok, max_reprompt_len=100)
    first = ids("<system> a <user> b c <assistant>")
    second = ids("<user> d <assistant>")
    width = out.prompt_length
    assert width == len(first)
    assert out.input_ids[0, :width].tolist() == first  # no <bos>: the template is the whole prompt
    assert out.input_ids[1, :width].tolist() == [ID["<pad>"]] * (width - len(second)) + second
    assert torch.equal(out.input_ids[:, width:], cids)
    assert torch.equal(out.attention_mask[:, width:], cmask)


def test_chat_template_kwargs_are_passed_through():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    chats = [[{"role": "user", "content": "a"}]] * 2
    out = tokenize_teacher_prompts(
        chats, cids, cmask, tok, max_reprompt_len=100, chat_template_kwargs={"enable_thinking": True}
    )
    assert out.input_ids[0, : out.prompt_length].tolist() == ids("<user> a <assistant> <think>")


def test_left_truncation_keeps_the_last_tokens():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    out = tokenize_teacher_prompts(["a b c d e", "a b"], cids, cmask, tok, max_reprompt_len=3)
    assert out.prompt_length == 3
    assert out.input_ids[:, :3].tolist() == [ids("c d e"), ids("<bos> a b")]
    assert out.attention_mask[:, :3].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_mixed_text_and_chat_batch_keeps_order():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    out = tokenize_teacher_prompts(
        [[{"role": "user", "content": "a"}], "b"], cids, cmask, tok, max_reprompt_len=100
    )
    width = out.prompt_length
    assert out.input_ids[0, :width].tolist() == ids("<user> a <assistant>")
    assert out.input_ids[1, :width].tolist() == ids("<pad> <bos> b")


def test_eos_pads_when_there_is_no_pad_token():
    tok = make_tokenizer(pad=False)
    assert tok.pad_token_id is None
    cids, cmask = completions_block()
    out = tokenize_teacher_prompts(["a b", "a"], cids, cmask, tok, max_reprompt_len=100)
    assert out.input_ids[1, 0].item() == ID["<eos>"]
    assert out.attention_mask[1, 0].item() == 0


def test_tokenize_validates_arguments():
    tok = make_tokenizer()
    cids, cmask = completions_block()
    with pytest.raises(ValueError):
        tokenize_teacher_prompts(["a", "b"], cids, cmask, tok, max_reprompt_len=0)
    with pytest.raises(ValueError):
        tokenize_teacher_prompts(["a"], cids, cmask, tok, max_reprompt_len=10)


def test_end_to_end_reprompt_then_tokenise():
    tok = make_tokenizer()
    args = settings(
        reprompt_template="{prompt} {solution}", solution_template="{successful_previous_attempt}"
    )
    chat = [{"role": "user", "content": "a"}]
    teacher, mask = build_teacher_messages(
        [chat, chat], ["b c", "d e"], [0.0, 1.0], None, num_generations=2, args=args
    )
    cids, cmask = completions_block()
    out = tokenize_teacher_prompts(teacher, cids, cmask, tok, max_reprompt_len=100)
    width = out.prompt_length
    assert mask == [1.0, 0.0]
    assert out.input_ids[0, :width].tolist() == ids("<user> a d e <assistant>")
    assert out.input_ids[1, :width].tolist() == ids("<pad> <pad> <user> a <assistant>")
