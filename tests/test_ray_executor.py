"""Judging on Ray, on a real two-node cluster started here (``ray start --head`` and a second
``ray start --address=...``, each its own raylet): the same verdicts as the local thread pool
for 1,000 calls (right, wrong and unparsable math answers; passing, wrong and endlessly
looping programs), multi-turn episodes that continue where a local step leaves them, and every
call delivered exactly once when an actor, or a whole node, is killed mid-batch."""

from __future__ import annotations

import json
import sys
import threading
import time

import gymnasium as gym
import pytest

import sdpo_envs  # noqa: F401  (registers the environments)
from sdpo_agent.cli import build_parser, main
from sdpo_agent.cli.job_options import job_spec
from sdpo_agent.config import GRPOConfig, SDPOConfig
from sdpo_agent.jobs.eval import EvalSpec
from sdpo_agent.models.tiny import build_tiny_model
from sdpo_agent.trainers.grpo import GRPOTrainer
from sdpo_envs import as_reward_func, batch_step, make_env_factory
from sdpo_envs.executors import (
    LocalExecutor,
    RayConnectionError,
    RayExecutor,
    RayUnavailable,
    executor_for,
    make_executor,
)
from sdpo_envs.executors.local_cluster import LocalRayCluster, free_port
from sdpo_envs.executors.ray_runtime import probe

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one cluster, one test process

MATH_CALLS, CODE_CALLS = 940, 60
TINY_RUN = {
    "max_steps": 1,
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 8,
    "report_to": "none",
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "disable_tqdm": True,
}
LOOP = "```python\ndef has_close_elements(numbers, threshold):\n    while True:\n        pass\n```"
WRONG = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"


def math_calls(n: int) -> list[tuple]:
    factory = make_env_factory("sdpo/Math-v0")
    probe_env = factory()
    calls = []
    for i in range(n):
        task = probe_env.validate_task(probe_env.tasks[i % len(probe_env.tasks)])
        answer = (f"\\boxed{{{task['answer']}}}", "\\boxed{-7.5}", "no final answer")[i % 3]
        calls.append((factory, i % len(probe_env.tasks), answer))
    return calls


def code_calls(n: int) -> list[tuple]:
    factory = make_env_factory("sdpo/CodeExec-v0", time_limit_s=0.2)
    canonical = factory().oracle_actions(factory().tasks[0])[0]
    return [(factory, 0, (canonical, WRONG, WRONG, LOOP, canonical)[i % 5]) for i in range(n)]


def workload() -> tuple[list, list[str]]:
    """Fresh envs, each reset on its task, and their actions: 1,000 judge calls."""
    calls = math_calls(MATH_CALLS) + code_calls(CODE_CALLS)
    envs, actions = [], []
    for factory, index, action in calls:
        env = factory()
        env.reset(seed=0, options={"index": index})
        envs.append(env)
        actions.append(action)
    return envs, actions


def verdicts(results) -> list[tuple]:
    """What each call was judged. A time limit's feedback names the clock that ran out first
    (CPU, or wall time on a loaded machine), which no executor decides: its verdict counts."""
    return [
        (r.info["verdict"], r.reward, r.terminated)
        + (() if r.info["verdict"] == "time_limit" else (r.info["feedback"].text,))
        for r in results
    ]


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(nodes=2, cpus_per_node=1) as started:
        ray.init(address=started.address, log_to_driver=False)
        try:
            started.wait_for_nodes(2)
            yield started
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def executor(cluster):
    ex = make_executor("ray", ray_address=cluster.address)  # the one trainers and CLIs get
    assert isinstance(ex, RayExecutor) and ex.wait_ready(nodes=2) == 2
    assert ex.pool.ready_slots == 8  # four per CPU of each node
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def local_verdicts():
    envs, actions = workload()
    return verdicts(batch_step(envs, actions, timeout_s=120))


# -- bad input (no cluster needed) -------------------------------------------------------
def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(RayUnavailable, match=r"pip install 'sdpo-gym\[ray\]'"):
        make_executor("ray", ray_address="127.0.0.1:1")


def test_an_address_that_does_not_answer_is_named_with_the_timeout():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RayConnectionError, match=rf"no Ray cluster answers at {address} .*within 2 s"):
        probe(address, timeout_s=2)
    with pytest.raises(RayConnectionError, match=address):
        make_executor("ray", ray_address=address)


@pytest.mark.parametrize("config_class", [SDPOConfig, GRPOConfig])
def test_configs_check_the_judge_backend(config_class, tmp_path):
    args = config_class(output_dir=str(tmp_path), judge_backend="ray", ray_address="10.0.0.1:6379")
    assert (args.judge_backend, args.ray_address) == ("ray", "10.0.0.1:6379")
    with pytest.raises(ValueError, match="judge_backend must be one of"):
        config_class(output_dir=str(tmp_path), judge_backend="dask")
    with pytest.raises(ValueError, match="ray_address='h:1' needs judge_backend='ray'"):
        config_class(output_dir=str(tmp_path), ray_address="h:1")


def test_the_commands_take_the_judge_backend_flags(capsys):
    flags = ["--judge-backend", "ray", "--ray-address", "10.0.0.1:6379"]
    argv = ["compare", "--env", "sdpo/Math-v0", *flags]
    args = build_parser(argv).parse_args(argv)
    args._argv = argv
    assert job_spec(args).overrides == {"judge_backend": "ray", "ray_address": "10.0.0.1:6379"}
    address = f"127.0.0.1:{free_port()}"
    assert main(["eval", "--env", "sdpo/Math-v0", "--tasks", "4", *flags[:3], address]) == 2
    assert f"no Ray cluster answers at {address}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs judge_backend='ray'"):
        EvalSpec(env="sdpo/Math-v0", ray_address=address)


def test_envs_check_the_judge_backend_they_are_made_with():
    with pytest.raises(ValueError, match="judge_backend must be one of"):
        gym.make("sdpo/Math-v0", judge_backend="dask")
    with pytest.raises(ValueError, match="ray_address='h:1' needs judge_backend='ray'"):
        gym.make("sdpo/Math-v0", ray_address="h:1")
    local = gym.make("sdpo/Math-v0").unwrapped
    assert isinstance(executor_for([local]), LocalExecutor)
    remote = gym.make("sdpo/Math-v0", judge_backend="ray", ray_address="h:1").unwrapped
    with pytest.raises(ValueError, match="different judge backends"):
        executor_for([local, remote])


# -- on the cluster ------------------------------------------------------------------------
def test_envs_made_for_the_cluster_are_judged_there(cluster, executor):
    """``gym.make(id, judge_backend="ray", ray_address=...)``: batch_step, with no executor
    given (or this host's), runs those envs' steps on the cluster's warm pool."""
    factory = make_env_factory("sdpo/Math-v0", judge_backend="ray", ray_address=cluster.address)
    envs, actions = [], []
    for i in range(24):
        env = factory()
        env.reset(seed=0, options={"index": i})
        envs.append(env)
        actions.append(f"\\boxed{{{env.task['answer']}}}" if i % 2 else "\\boxed{-7.5}")
    assert executor_for(envs) is executor  # the process's shared pool for that cluster
    assert executor_for(envs, LocalExecutor()) is executor
    calls = executor.stats["calls"]
    results = batch_step(envs, actions, timeout_s=120)
    assert executor.stats["calls"] >= calls + len(envs)
    local = [factory() for _ in envs]
    for env, i in zip(local, range(len(envs))):
        env.judge_backend = "local"
        env.ray_address = None
        env.reset(seed=0, options={"index": i})
    assert verdicts(results) == verdicts(batch_step(local, actions, timeout_s=120))
    assert [r.info["verdict"] for r in results[:2]] == ["wrong_answer", "pass"]


def test_a_thousand_calls_give_the_local_pools_verdicts(executor, local_verdicts):
    envs, actions = workload()
    before = dict(executor.stats)
    results = batch_step(envs, actions, timeout_s=120, executor=executor)
    assert verdicts(results) == local_verdicts
    kinds = {v for v, *_ in local_verdicts}
    assert {"pass", "wrong_answer", "format_error", "time_limit"} <= kinds  # the program's own timeouts
    assert "judge_error" not in kinds
    assert executor.stats["retries"] == before["retries"]  # nothing failed, nothing re-run
    assert all(env._done for env in envs)  # each caller's env was stepped, as locally


def test_multi_turn_episodes_continue_from_the_shipped_state(executor):
    factory = make_env_factory("sdpo/ToolUse-v0")
    runs = {}
    for name, ex in (("local", LocalExecutor()), ("ray", executor)):
        envs = [factory() for _ in range(6)]
        plans = []
        for i, env in enumerate(envs):
            env.reset(seed=i, options={"index": i})
            plans.append(env.oracle_actions(env.task))
        assert max(len(p) for p in plans) >= 2  # at least one episode has several turns
        trace = []
        for turn in range(max(len(p) for p in plans)):
            live = [i for i, p in enumerate(plans) if turn < len(p)]
            results = ex.step([envs[i] for i in live], [plans[i][turn] for i in live], timeout_s=120)
            trace.append([(r.observation, r.reward, r.info["verdict"], r.info["messages"]) for r in results])
        runs[name] = (trace, [(env.turn, env.messages, env._done) for env in envs])
    assert runs["ray"] == runs["local"]
    assert all(verdict == "pass" for _, _, verdict, _ in runs["ray"][0][-1])


def test_a_call_that_raises_is_its_own_error_not_retried(executor):
    env = make_env_factory("sdpo/Math-v0")()  # never reset: step() raises
    retries = executor.stats["retries"]
    (remote,) = batch_step([env], ["\\boxed{1}"], executor=executor)
    (local,) = batch_step([make_env_factory("sdpo/Math-v0")()], ["\\boxed{1}"])
    assert remote.info["verdict"] == "judge_error"
    assert remote.info["feedback"].details["reason"] == local.info["feedback"].details["reason"]
    assert "call reset() first" in remote.info["feedback"].details["reason"]
    assert executor.stats["retries"] == retries


def test_the_backstop_timeout_is_reported_and_frees_its_slot_later(executor):
    slots = executor.pool.ready_slots
    (outcome,) = executor.map(time.sleep, [3.0], timeout_s=0.5)
    assert outcome.kind == "timeout" and "exceeded 0.5 s" in outcome.error
    deadline = time.monotonic() + 30
    while executor.pool.ready_slots - sum(w.busy for w in executor.pool.workers.values()) < slots:
        assert time.monotonic() < deadline, "the abandoned call's slot never came back"
        executor.pool.poll(timeout_s=0.2)
    assert [o.kind for o in executor.map(time.sleep, [0.0] * slots)] == ["ok"] * slots


def test_a_killed_actor_has_its_calls_rerun_on_the_other(executor):
    started, retries = executor.pool.actors_started, executor.stats["retries"]
    victim = next(iter(executor.pool.workers.values()))
    killer = threading.Timer(0.5, lambda: ray.kill(victim.handle, no_restart=True))
    killer.start()
    outcomes = executor.map(time.sleep, [0.3] * 40)  # five rounds over eight slots
    killer.join()
    assert [o.kind for o in outcomes] == ["ok"] * 40
    assert executor.stats["retries"] > retries  # the victim held calls, and they ran again
    assert executor.wait_ready(nodes=2) == 2  # its node lives: a fresh actor took its place
    assert executor.pool.actors_started > started


def test_trainers_and_reward_functions_judge_on_the_cluster(cluster, executor, tmp_path):
    model, tokenizer = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path), judge_backend="ray", ray_address=cluster.address, **TINY_RUN)
    trainer = GRPOTrainer(model=model, args=args, env="sdpo/Math-v0", processing_class=tokenizer)
    assert trainer.agent.executor is executor  # one warm pool per cluster in a process
    calls = executor.stats["calls"]
    trainer.train()
    assert executor.stats["calls"] - calls == TINY_RUN["per_device_train_batch_size"]
    assert any("rewards/env/mean" in entry for entry in trainer.state.log_history)

    reward = as_reward_func("sdpo/Math-v0", judge_backend="ray", ray_address=cluster.address)
    row = make_env_factory("sdpo/Math-v0")().tasks[0]
    columns = {k: [row[k]] * 2 for k in row}
    answers = [[{"role": "assistant", "content": f"\\boxed{{{row['answer']}}}"}], "no answer"]
    assert reward([None, None], answers, **columns) == as_reward_func("sdpo/Math-v0")(
        [None, None], answers, **columns
    )


def test_the_judge_command_on_the_cluster_prints_what_it_prints_locally(cluster, executor, capsys):
    calls = executor.stats["calls"]
    reports = []
    for flags in ([], ["--judge-backend", "ray", "--ray-address", cluster.address]):
        assert main(["judge", "--task", "HumanEval/0", "--canonical", "--json", *flags]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    untimed = [{k: v for k, v in r.items() if k != "details"} for r in reports]  # details: CPU and wall s
    assert untimed[0] == untimed[1] and untimed[0]["verdict"] == "pass"
    assert [r["details"]["passed"] for r in reports] == [1, 1]
    assert executor.stats["calls"] == calls + 1  # the second one was judged on the cluster


def test_a_node_killed_mid_run_still_delivers_every_verdict_once(cluster, executor, local_verdicts):
    """Last in this file: the second node does not come back."""
    envs, actions = workload()
    retries = executor.stats["retries"]
    done = executor.stats["completed"]
    box: dict[str, list] = {}
    run = threading.Thread(
        target=lambda: box.update(results=batch_step(envs, actions, timeout_s=120, executor=executor))
    )
    run.start()
    while executor.stats["completed"] - done < 200:  # mid-run: well under way, far from done
        assert run.is_alive(), "the batch ended before the node could be killed"
        time.sleep(0.01)
    cluster.kill_node(1)
    killed_at = executor.stats["completed"] - done
    run.join(timeout=300)
    assert killed_at < len(envs)
    assert verdicts(box["results"]) == local_verdicts  # every call judged once, as locally
    assert executor.stats["retries"] > retries  # calls the dead node held were re-run
    assert executor.stats["infrastructure_failures"] == 0
    assert len(executor.pool.alive_nodes()) == 1
