"""pytest glue: options, parametrisation, fixtures, the terminal table and report.json.

The plugin stays inert (and imports no torch) unless a test asks for ``illusion_item``.
Run state lives in ``config.stash``; each test attaches its item record to its report (a gate:
the records of its whole language), and every suite test its kind and language, so the summary
and report.json work the same with and without xdist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .errors import ConfigError, IllusionError
from .terminal import safe_text

ITEM_PROPERTY = "illusion_item"
TEST_PROPERTY = "illusion_test"  # kind, lang and item id of a suite test: never parsed back from its id
GATE_RECORDS_PROPERTY = "illusion_gate_records"  # the item records a gate used (call report only, not junit)
GATE_RECORDS_KEY = pytest.StashKey[list]()
SNAPSHOT_PROPERTY = "illusion_snapshot"
# option name -> (type, default, help); each is also an ini key ``illusion_<name>``
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "model": (str, "smollm2-135m", "candidate model: smollm2-135m, a checkpoint dir, a .gguf file or org/name"),
    "reference": (str, None, "dense reference model spec (default: the model before pruning)"),
    "prune": (str, None, "prune the reference in-process: METHOD:SPARSITY or METHOD:N:M, e.g. wanda:0.5"),
    "dataset": (str, None, "a directory of <lang>.jsonl files, a .jsonl/.csv/.parquet file, mkqa:PATH_OR_ID or "
                           "hf:ID[:SPLIT] (default: the shipped fixtures/qa)"),
    "langs": (str, None, "comma-separated languages, e.g. en,fr (default: all in the dataset)"),
    "limit-per-lang": (int, None, "the same N seeded ids in every language"),
    "report": (str, None, "directory to write report.json into"),
    "rank-tolerance": (int, 0, "gold-rank worsening a snapshot test allows: K positions or K x 10%% of the "
                               "baseline rank, whichever is larger"),
    "snapshot-name": (str, None, "pin the gold-rank baseline set, e.g. release (default: one set per model, "
                                 "recipe, dataset, dtype and prompt format)"),
    "alpha": (float, 0.05, "significance level of the per-language McNemar gate"),
    "max-illusion-rate": (float, None, "fail a language whose illusion rate exceeds this (0..1)"),
    "device": (str, "auto", "auto, cpu, cuda or cuda:N"),
    "dtype": (str, "auto", "auto (bf16 where fast, else fp32), float32, bfloat16 or float16"),
    "device-map": (str, None, "auto, balanced or sequential: load through accelerate's big-model inference, "
                              "sharded over GPUs and offloaded to CPU or disk (default: whole, on --illusion-device)"),
    "max-memory": (str, None, "per-device budget for --illusion-device-map, e.g. 0=70GiB,1=70GiB,cpu=200GiB "
                              "(the rest goes to disk under the illusion cache)"),
    "batch-size": (int, 64, "questions per forward pass (in float32 no verdict, rank or output depends on it; "
                               "in bf16/fp16 numbers may, so it is part of the results-store key there)"),
    "seed": (int, 0, "seed for the subset choice and sampling probes"),
    "prompt-format": (str, "auto", "auto (chat template if the model has one), chat or plain"),
    "max-new-tokens": (int, 24, "greedy answer length limit (stops earlier at newline/EOS)"),
    "calibration-langs": (str, None, "calibration text languages for wanda/sparsegpt, e.g. fr (default: all shipped)"),
    "calibration-samples": (int, 64, "calibration windows for wanda/sparsegpt"),
    "calibration-seqlen": (int, 256, "tokens per calibration window"),
    "calibration-seed": (int, 0, "seed for the calibration windows of wanda/sparsegpt (--illusion-seed does not "
                                 "change the pruned model)"),
}
FLAGS = {"trust-remote-code": "allow model repositories to run their own code (off by default)",
         "no-cache": "neither read nor write the results store (recompute everything)"}
SESSION_KEY = pytest.StashKey["IllusionSession"]()
RECORDS_KEY = pytest.StashKey[dict]()
SNAPSHOTS_KEY = pytest.StashKey[dict]()
OUTCOMES_KEY = pytest.StashKey[dict]()
UNUSED_KEY = pytest.StashKey[list]()
CONFIG_KEY = pytest.StashKey["RunConfig"]()
ERROR_KEY = pytest.StashKey[str]()
BROKEN_KEY = pytest.StashKey[str]()
RUN_DIR_KEY = pytest.StashKey[str]()
RUN_DIR_INPUT = "illusion_run_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("illusion", "benchmark-illusion: MC-correct must imply generation-correct")
    for name, (kind, default, help_text) in OPTIONS.items():
        dest = "illusion_" + name.replace("-", "_")
        group.addoption(f"--illusion-{name}", dest=dest, default=None, help=f"{help_text} [default: {default}]")
        parser.addini(dest, help_text, default=None)
    for name, help_text in FLAGS.items():
        dest = "illusion_" + name.replace("-", "_")
        group.addoption(f"--illusion-{name}", dest=dest, action="store_true", default=False, help=help_text)
        parser.addini(dest, help_text, type="bool", default=False)


def _option(config: pytest.Config, name: str) -> Any:
    """Command line first, then the ini key, then the default; typed and validated."""
    dest = "illusion_" + name.replace("-", "_")
    kind, default, _ = OPTIONS[name]
    value = config.getoption(dest)
    if value is None:
        value = config.getini(dest)
        if name in INI_PATHS and value and config.inipath is not None:
            value = _ini_path(name, str(value).strip(), config.inipath.parent)
    if value in (None, ""):
        return default
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"--illusion-{name} {value!r}: expected a number") from None
    if kind is int:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"--illusion-{name} {value!r}: expected a whole number") from None
        zero_ok = name in ("rank-tolerance", "seed", "calibration-seed")
        if number < (0 if zero_ok else 1):
            raise ConfigError(f"--illusion-{name} {number}: must be {'>= 0' if zero_ok else '>= 1'}")
        return number
    return str(value).strip()


INI_PATHS = ("model", "reference", "dataset", "report")  # path options an ini file may give relative


def _ini_path(name: str, value: str, ini_dir: Path) -> str:
    """A relative path from an ini file, against the ini file's directory (as pytest's own path options).

    The command line's paths stay relative to the current directory. A builtin model name or a hub id
    (``org/name``, which looks like a relative path) is kept unless that path exists next to the ini
    file; ``hf:`` datasets are ids; ``mkqa:PATH`` resolves its path part (a hub id unless it exists);
    a report directory and a plain dataset path always resolve (an error then names the full path).
    """
    from .models import BUILTINS

    prefix = "mkqa:" if name == "dataset" and value.startswith("mkqa:") else ""
    path = Path(value[len(prefix):]).expanduser()
    if value in BUILTINS or value.startswith("hf:") or path.is_absolute():
        return value
    resolved = ini_dir / path
    always = name == "report" or (name == "dataset" and not prefix)
    return prefix + str(resolved) if always or resolved.exists() else value


def run_config(config: pytest.Config):
    from .session import RunConfig

    langs = _option(config, "langs")
    calibration_langs = _option(config, "calibration-langs")
    prune = _option(config, "prune")
    if prune:
        from .prune import parse_recipe

        parse_recipe(prune)  # a bad recipe is a usage error before anything loads
    prompt_format = _option(config, "prompt-format")
    if prompt_format not in ("auto", "chat", "plain"):
        raise ConfigError(f"--illusion-prompt-format {prompt_format!r}: choose auto, chat or plain")
    trust = config.getoption("illusion_trust_remote_code") or config.getini("illusion_trust_remote_code")
    snapshot_name = _option(config, "snapshot-name")
    if snapshot_name:
        from .snapshots import check_set_name

        try:
            snapshot_name = check_set_name(snapshot_name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    from .models import check_placement

    max_memory = _option(config, "max-memory")
    device_map = check_placement(_option(config, "device-map"), max_memory)
    alpha, max_rate = _option(config, "alpha"), _option(config, "max-illusion-rate")
    from .verdict import check_gate_options

    check_gate_options(alpha, max_rate)
    return RunConfig(
        model=_option(config, "model"), reference=_option(config, "reference"), prune=prune,
        dataset=_option(config, "dataset"),
        langs=_split_list(langs, "langs"),
        limit_per_lang=_option(config, "limit-per-lang"), report_dir=_option(config, "report"),
        rank_tolerance=_option(config, "rank-tolerance"), device=_option(config, "device"),
        dtype=_option(config, "dtype"), batch_size=_option(config, "batch-size"), seed=_option(config, "seed"),
        device_map=device_map, max_memory=max_memory,
        trust_remote_code=bool(trust), prompt_format=prompt_format,
        max_new_tokens=_option(config, "max-new-tokens"),
        calibration_langs=_split_list(calibration_langs, "calibration-langs"),
        calibration_samples=_option(config, "calibration-samples"),
        calibration_seqlen=_option(config, "calibration-seqlen"), calibration_seed=_option(config, "calibration-seed"),
        use_store=not (config.getoption("illusion_no_cache") or config.getini("illusion_no_cache")),
        snapshot_name=snapshot_name, alpha=alpha, max_illusion_rate=max_rate,
    )


def _split_list(text: str | None, option: str) -> tuple[str, ...] | None:
    """``en, fr`` -> ("en", "fr"); None when the option is unset. A value that names no language
    (``,``) is refused: read as unset, it would silently mean every language."""
    if not text:
        return None
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise ConfigError(f"--illusion-{option} {text!r}: no language given; list languages like en,fr "
                          "or leave the option out for all of them")
    return values


def _session(config: pytest.Config):
    """Create the run state on first use (so plain test runs never pay for it)."""
    if SESSION_KEY not in config.stash:
        from .session import IllusionSession, WorkerShare

        run, share, worker = config.stash[CONFIG_KEY], None, None
        if hasattr(config, "workerinput"):
            worker = config.workerinput.get("workerid", "gw0")
            workers = int(config.workerinput.get("workercount", 1))
            _share_cores(workers)
            run = _own_gpu(run, worker)
            if config.workerinput.get(RUN_DIR_INPUT):
                share = WorkerShare(run_dir=Path(config.workerinput[RUN_DIR_INPUT]), workers=workers,
                                    index=int(worker.removeprefix("gw") or 0))
        config.stash[SESSION_KEY] = IllusionSession(run, progress=lambda msg: _say(config, msg, worker), share=share)
    return config.stash[SESSION_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """On the xdist controller: give the workers of this run one directory to share work through
    (block locks, and the results exchange under --illusion-no-cache). Removed when the run ends."""
    if not getattr(node.gateway.spec, "popen", False):
        return  # a remote worker cannot see this machine's files: it computes every item it needs itself
    config = node.config
    if RUN_DIR_KEY not in config.stash:
        import tempfile

        config.stash[RUN_DIR_KEY] = tempfile.mkdtemp(prefix="illusion-run-")
    node.workerinput[RUN_DIR_INPUT] = config.stash[RUN_DIR_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    if RUN_DIR_KEY in config.stash:
        import shutil

        shutil.rmtree(config.stash[RUN_DIR_KEY], ignore_errors=True)


def _share_cores(workers: int) -> None:
    """Each xdist worker gets its share of the cores, so N workers do not oversubscribe them."""
    import os

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))


def _own_gpu(run, worker_id: str):
    """On a machine with several GPUs, xdist worker gwN takes GPU N (mod the count)."""
    if run.device not in ("auto", "cuda"):
        return run
    import dataclasses

    import torch

    from .models import worker_device

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = worker_device(run.device, int(worker_id.removeprefix("gw") or 0), gpus)
    return dataclasses.replace(run, device=device) if device != run.device else run


def _say(config: pytest.Config, message: str, worker: str | None = None) -> None:
    """Progress on slow steps, shown even while pytest captures output (and by which xdist worker)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    line = safe_text(f"[illusion{' ' + worker if worker else ''}] {message}")
    if capture is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        print(line, file=sys.stderr, flush=True)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RECORDS_KEY] = {}
    config.stash[SNAPSHOTS_KEY] = {}
    config.stash[OUTCOMES_KEY] = {}
    config.pluginmanager.register(_RecordCollector(config.stash[RECORDS_KEY], config.stash[SNAPSHOTS_KEY],
                                                   config.stash[OUTCOMES_KEY]), "illusion-records")
    try:
        config.stash[CONFIG_KEY] = run_config(config)  # validated once, before any collection
    except IllusionError as exc:
        raise pytest.UsageError(safe_text(exc, lines=True)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = [name for name in ("illusion_item", "illusion_lang") if name in metafunc.fixturenames]
    if not wanted:
        return
    try:
        items = _session(metafunc.config).items
    except IllusionError as exc:
        # A collector would wrap this in a traceback; raise it as a usage error after collection.
        metafunc.config.stash[ERROR_KEY] = str(exc)
        items = []
    if "illusion_item" in wanted:
        metafunc.parametrize("illusion_item", items, ids=[item.key for item in items])
    else:
        langs = list(dict.fromkeys(item.lang for item in items))
        metafunc.parametrize("illusion_lang", langs, ids=langs)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Runs after -k/-m deselection: remember exactly which items will run."""
    if ERROR_KEY in config.stash:
        raise pytest.UsageError(safe_text(f"benchmark-illusion: {config.stash[ERROR_KEY]}", lines=True))
    params = [it.callspec.params for it in items if hasattr(it, "callspec")]
    chosen = [p["illusion_item"] for p in params if "illusion_item" in p]
    gated = {p["illusion_lang"] for p in params if "illusion_lang" in p}
    if chosen or gated:
        session = _session(config)
        chosen += [item for item in session.items if item.lang in gated]  # a gate needs its whole language
        session.set_collected(list({item.key: item for item in chosen}.values()))


@pytest.fixture
def illusion_verdict(request: pytest.FixtureRequest, illusion_item):
    """The paired (candidate, reference) result of the current item; attaches its record to the report."""
    from .report import item_record

    try:
        verdict = _session(request.config).verdict(illusion_item)
    except IllusionError as exc:  # a model that does not load breaks every item: stop the run, say why
        stop_run(request.session, exc)
    record = item_record(verdict, question=illusion_item.question, aliases=illusion_item.aliases,
                         item_type=illusion_item.type)
    cand = verdict.candidate
    request.node.user_properties += [  # readable in --junitxml; the full record feeds the summary
        ("illusion_category", verdict.candidate_category), ("illusion_gold_rank", cand.gold_rank),
        ("illusion_recovered_by", ",".join(cand.recovered_by)),
        (ITEM_PROPERTY, json.dumps(record, ensure_ascii=False)),
    ]
    return verdict


BROKEN_PREFIX = "benchmark-illusion: "


def stop_run(session: pytest.Session, problem: Exception) -> NoReturn:
    """The run is broken (a model or dataset file that does not load): say why once and stop
    with exit code 4, so CI tells it from findings (1). Nothing is retried per test.

    On an xdist worker, ``shouldstop`` carries the message to the controller, which stops the
    other workers and prints it once (see ``pytest_testnodedown``)."""
    message = safe_text(BROKEN_PREFIX + str(problem), lines=True)
    if hasattr(session.config, "workerinput"):
        session.shouldstop = message
    pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller: a worker that stopped the run (``stop_run``) makes it exit 4."""
    stop = getattr(node, "workeroutput", {}).get("shouldstop")
    if isinstance(stop, str) and stop.startswith(BROKEN_PREFIX):
        node.config.stash[BROKEN_KEY] = stop


@pytest.fixture
def illusion_snapshot(request: pytest.FixtureRequest, snapshot) -> "GoldRankBaseline":
    """syrupy's ``snapshot``, stored in this run's gold-rank baseline set under ``snapshots/``."""
    from .snapshots import GoldRankExtension

    config = request.config
    try:
        name, recorded_with = _session(config).snapshot_set
    except IllusionError as exc:
        stop_run(request.session, exc)
    root = config.rootpath / "snapshots" / name
    updating = bool(config.option.update_snapshots)
    extension = GoldRankExtension.configured(root=root, tolerance=config.stash[CONFIG_KEY].rank_tolerance,
                                             exact=updating, recorded_with=recorded_with)
    return GoldRankBaseline(assertion=snapshot.use_extension(extension), root=root, node=request.node,
                            updating=updating, recording_new=bool(config.option.update_new_snapshots_only))


class GoldRankBaseline:
    """The candidate's rank record of one item against its committed baseline."""

    def __init__(self, *, assertion, root, node, updating: bool, recording_new: bool):
        self.assertion, self.root, self.node = assertion, root, node
        self.updating, self.recording_new = updating, recording_new

    def check(self, verdict, item) -> None:
        from .snapshots import SnapshotFileError, compare, rank_record, read_set_file

        path = self.root / f"{item.lang}.json"
        shown = _relative(path, self.node.config.rootpath)
        try:
            baseline = read_set_file(path).get(item.key)
        except SnapshotFileError as exc:  # never overwritten, not even by --snapshot-update
            # not pytest.fail here: it would chain the two ("During handling ...") and say it twice
            raise pytest.fail.Exception(safe_text(exc, lines=True), pytrace=False) from None
        record = rank_record(verdict.candidate)
        if baseline is None and not (self.updating or self.recording_new):
            self._note(item, shown, "missing")
            pytest.fail(safe_text(f"[{item.key}] no gold-rank baseline in {shown}. Record the missing baselines "
                                  f"with:\n  {rerun_command(self.node.config, '--snapshot-update-new-only')}",
                                  lines=True), pytrace=False)
        matched = self.assertion == record  # syrupy's bookkeeping; writes when updating
        if self.updating or baseline is None:
            self._note(item, shown, "recorded" if baseline != record else "unchanged")
            assert matched, f"syrupy did not record {item.key}"
            return
        comparison = compare(item.key, baseline, record, self.assertion.extension.tolerance)
        if comparison.regressed:
            self._note(item, shown, "regressed", comparison.summary())
            pytest.fail(regression_message(comparison, item, verdict, shown, self.node.config), pytrace=False)
        assert matched, f"syrupy and the tolerance rule disagree on {item.key}"
        self._note(item, shown, "improved" if comparison.improved else "matched", comparison.summary())

    def _note(self, item, path: str, status: str, summary: str = "") -> None:
        self.node.user_properties.append((SNAPSHOT_PROPERTY, json.dumps(
            {"key": item.key, "lang": item.lang, "path": path, "status": status, "summary": summary},
            ensure_ascii=False)))


def _relative(path, root) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def rerun_command(config: pytest.Config, *extra: str) -> str:
    """This run's own command line plus ``extra``: what a user pastes to act on a message."""
    import shlex

    args = [a for a in config.invocation_params.args if a not in ("--snapshot-update", "--snapshot-update-new-only")]
    return shlex.join(["pytest", *args, *extra])


def regression_message(comparison, item, verdict, path: str, config: pytest.Config) -> str:
    lines = [f"[{safe_text(item.key)}] gold rank regressed against the baseline in {path}: {comparison.summary()}",
             f"  question: {safe_text(item.question)}", f"  gold:     {safe_text(item.answer)}",
             f"  greedy:   {verdict.candidate.generation!r}"]
    lines += ["  " + line for line in comparison.table()]
    lines.append(f"  if this change is intended, record it: {rerun_command(config, '--snapshot-update')}")
    return safe_text("\n".join(lines), lines=True)


def check_gold_rank(verdict, item, baseline: GoldRankBaseline) -> None:
    """The candidate's gold rank and category must not be worse than the committed baseline."""
    baseline.check(verdict, item)


def suite_test(item: pytest.Item) -> dict | None:
    """Kind, language and item id of one of the suite's tests, from its parameters; None for others."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    kind = getattr(item, "originalname", item.name).removeprefix("test_")
    if kind in ("mc_implies_generation", "gold_rank") and "illusion_item" in params:
        return {"kind": kind, "lang": params["illusion_item"].lang, "id": params["illusion_item"].id}
    if kind == "language_gate" and "illusion_lang" in params:
        return {"kind": kind, "lang": params["illusion_lang"], "id": None}
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Every report of a suite test says which test it is (an xdist worker's reach the controller
    with it), so a test that errors in setup still counts under its language."""
    report = yield
    test = suite_test(item)
    if test is not None:
        report.user_properties.append((TEST_PROPERTY, json.dumps(test, ensure_ascii=False)))
    if report.when == "call" and GATE_RECORDS_KEY in item.stash:
        report.user_properties.append((GATE_RECORDS_PROPERTY, json.dumps(item.stash[GATE_RECORDS_KEY],
                                                                         ensure_ascii=False)))
    return report


class _RecordCollector:
    """Collects item records and snapshot outcomes from test reports (ours, or an xdist worker's)."""

    def __init__(self, records: dict, snapshots: dict, outcomes: dict):
        self.records, self.snapshots, self.outcomes = records, snapshots, outcomes

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self._count(report)
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == ITEM_PROPERTY:
                record = json.loads(value)
                self.records[record["lang"], record["id"]] = record
            elif name == GATE_RECORDS_PROPERTY:  # the report's row of a gated language: the gate's items
                self.records.update({(r["lang"], r["id"]): r for r in json.loads(value)})
            elif name == SNAPSHOT_PROPERTY:
                note = json.loads(value)
                self.snapshots[note["key"]] = note

    def _count(self, report: pytest.TestReport) -> None:
        """The pytest outcome of each suite test, by kind and language, for report.json."""
        test = next((json.loads(value) for name, value in report.user_properties if name == TEST_PROPERTY), None)
        if test is None:
            return
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        self.outcomes[report.nodeid] = (test["kind"], test["lang"], outcome)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if BROKEN_KEY in config.stash:  # xdist reports a worker's stop as an interruption (2)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    records = list(config.stash[RECORDS_KEY].values())
    if hasattr(config, "workerinput") or not records:
        return
    if config.stash[SNAPSHOTS_KEY]:
        try:
            config.stash[UNUSED_KEY] = _unused_baselines(config)
        except IllusionError as exc:  # a corrupted file: its tests already failed saying so
            _say(config, f"unused-baseline check skipped: {exc}")
    report_dir = config.stash[CONFIG_KEY].report_dir
    if report_dir:
        from .report import build_report, write_report

        report = build_report(records, config.stash[CONFIG_KEY].as_dict(), config.stash[OUTCOMES_KEY].values())
        path = write_report(report_dir, report)
        config.stash[REPORT_PATH_KEY] = str(path)


REPORT_PATH_KEY = pytest.StashKey[str]()


def _unused_baselines(config: pytest.Config) -> list[tuple[str, list[str], bool]]:
    """(file, item keys, removed?) for baselines the run's options no longer select.

    Only languages that ran are looked at, and -k never makes a baseline unused (it filters
    tests, not the selection). ``--snapshot-update`` removes them, as syrupy does, unless
    ``--snapshot-no-cleanup``.
    """
    from .snapshots import unused_keys, update_set_file

    session = _session(config)
    selected: dict[str, list[str]] = {}
    for item in session.items:
        selected.setdefault(item.lang, []).append(item.key)
    remove = bool(config.option.update_snapshots) and not config.option.no_cleanup
    found = []
    for shown in sorted({note["path"] for note in config.stash[SNAPSHOTS_KEY].values()}):
        path = config.rootpath / shown
        keys = unused_keys(path, selected.get(path.stem, []))
        if keys and remove:
            update_set_file(path, dict.fromkeys(keys), session.snapshot_set[1])
        if keys:
            found.append((shown, keys, remove))
    return found


def _snapshot_summary(terminalreporter, config: pytest.Config) -> None:
    notes = list(config.stash.get(SNAPSHOTS_KEY, {}).values())
    if not notes:
        return
    terminalreporter = _SafeLines(terminalreporter)
    by_status: dict[str, list[dict]] = {}
    for note in notes:
        by_status.setdefault(note["status"], []).append(note)
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items()))
    terminalreporter.write_line(f"gold-rank baselines ({notes[0]['path'].rsplit('/', 1)[0]}/): {counts}")
    improved = sorted(by_status.get("improved", []), key=lambda n: n["key"])
    if improved:
        terminalreporter.write_line(f"  {len(improved)} improved over the baseline (they pass):")
        for note in improved[:20]:
            terminalreporter.write_line(f"    {note['key']}: {note['summary']}")
        if len(improved) > 20:
            terminalreporter.write_line(f"    ... and {len(improved) - 20} more")
        terminalreporter.write_line(f"  record them with: {rerun_command(config, '--snapshot-update')}")
    if by_status.get("missing"):
        terminalreporter.write_line(f"  {len(by_status['missing'])} items have no baseline; record them with: "
                                    f"{rerun_command(config, '--snapshot-update-new-only')}")
    for shown, keys, removed in config.stash.get(UNUSED_KEY, []):
        listed = ", ".join(keys[:10]) + (f", ... and {len(keys) - 10} more" if len(keys) > 10 else "")
        verb = "removed" if removed else "unused (not selected by this run's dataset options; --snapshot-update removes them)"
        terminalreporter.write_line(f"  {len(keys)} baselines in {shown} {verb}: {listed}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    records = list(config.stash.get(RECORDS_KEY, {}).values())
    if not records:
        return
    from .report import format_table, language_table

    rc = config.stash[CONFIG_KEY]
    candidate = rc.model + (f" pruned {rc.prune}" if rc.prune else "")
    terminalreporter.section("benchmark-illusion")
    terminalreporter = _SafeLines(terminalreporter)
    terminalreporter.write_line(f"candidate: {candidate}   reference: {rc.reference_spec}   (each cell: reference -> candidate)")
    for line in format_table(language_table(records)):
        terminalreporter.write_line(line)
    _snapshot_summary(terminalreporter, config)
    if REPORT_PATH_KEY in config.stash:
        terminalreporter.write_line(f"report written to {config.stash[REPORT_PATH_KEY]}")


class _SafeLines:
    """The terminal reporter's ``write_line`` with every line passed through ``safe_text``."""

    def __init__(self, terminalreporter):
        self._reporter = terminalreporter

    def write_line(self, line: str) -> None:
        self._reporter.write_line(safe_text(line))


@pytest.fixture
def illusion_gate(request: pytest.FixtureRequest, illusion_lang: str):
    """The paired McNemar gate of one language, over every item the options select in it. Its item
    records go to the report, so report.json and the table state the numbers the gate used."""
    from .report import item_record
    from .verdict import language_gate

    session = _session(request.config)
    items = [item for item in session.items if item.lang == illusion_lang]
    try:
        verdicts = session.verdicts(items)
    except IllusionError as exc:
        stop_run(request.session, exc)
    rc = request.config.stash[CONFIG_KEY]
    gate = language_gate(illusion_lang, verdicts, alpha=rc.alpha, max_illusion_rate=rc.max_illusion_rate)
    request.node.user_properties += [("illusion_gate_p_value", gate.p_value),
                                     ("illusion_gate_illusion_rate", gate.illusion_rate)]
    request.node.stash[GATE_RECORDS_KEY] = [
        item_record(verdict, question=item.question, aliases=item.aliases, item_type=item.type)
        for item, verdict in zip(items, verdicts)]
    return gate


def check_language_gate(gate) -> None:
    """A language fails when the candidate significantly loses answers it still recognises."""
    if not gate.passed:
        pytest.fail(safe_text(gate.message(), lines=True), pytrace=False)


def check_consistency(verdict, item) -> None:
    """The suite's core assertion: MC-correct implies generation-correct for the candidate."""
    from .report import consistency_message

    if verdict.outcome == "pass":
        return
    if verdict.outcome == "xfail":
        pytest.xfail(safe_text("pre-existing illusion: the reference is recognition-only on this item too "
                               f"(reference greedy: {verdict.reference.generation!r})"))
    pytest.fail(consistency_message(verdict, item), pytrace=False)

