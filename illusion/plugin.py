"""pytest hooks and fixtures: a table of contents, each entry handing its work to the owning module.

- options:   ``options`` (the ``--illusion-*`` table, reading and validation)
- the run:   ``session`` (items and results, xdist workers, a broken run)
- baselines: ``snapshots`` (the gold-rank workflow on top of syrupy)
- output:    ``records`` (what the tests report), from which ``report`` makes the table and report.json

The plugin stays inert (and imports no torch) unless a test asks for ``illusion_item``.
Run state lives in ``config.stash``; each test attaches its item record to its report (a gate:
the records of its whole language), and every suite test its kind and language, so the summary
and report.json work the same with and without xdist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import pytest

from .errors import IllusionError
from .options import add_options, run_config
from .records import GATE_RECORDS_KEY, RunRecords, gate_records, item_properties, label_report
from .session import (RUN_DIR_INPUT, broken_run_message, close_display, new_run_dir, open_session, remove_run_dir,
                      say, shares_files, stop_run)
from .terminal import safe_text

if TYPE_CHECKING:
    from .session import IllusionSession, RunConfig
    from .snapshots import GoldRankBaseline
    from .verdict import ItemVerdict, LanguageGate

T = TypeVar("T")
SESSION_KEY = pytest.StashKey["IllusionSession"]()
CONFIG_KEY = pytest.StashKey["RunConfig"]()
RECORDS_KEY = pytest.StashKey[RunRecords]()
UNUSED_KEY = pytest.StashKey[list]()  # unused gold-rank baselines, found when the run ends
ERROR_KEY = pytest.StashKey[str]()  # a dataset problem met during collection, raised after it
BROKEN_KEY = pytest.StashKey[str]()  # on the xdist controller: a worker stopped the run
RUN_DIR_KEY = pytest.StashKey[str]()  # on the xdist controller: the directory its workers share


# --- options and configuration ------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RECORDS_KEY] = RunRecords()
    config.pluginmanager.register(config.stash[RECORDS_KEY], "illusion-records")
    try:
        config.stash[CONFIG_KEY] = run_config(config)  # validated once, before any collection
    except IllusionError as exc:
        raise pytest.UsageError(safe_text(exc, lines=True)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    close_display(config)
    if RUN_DIR_KEY in config.stash:
        remove_run_dir(config.stash[RUN_DIR_KEY])


def _session(config: pytest.Config) -> IllusionSession:
    """Create the run state on first use (so plain test runs never pay for it)."""
    if SESSION_KEY not in config.stash:
        config.stash[SESSION_KEY] = open_session(
            config.stash[CONFIG_KEY], workerinput=getattr(config, "workerinput", None),
            say=lambda message, worker: say(config, message, worker))
    return config.stash[SESSION_KEY]


def _computed(request: pytest.FixtureRequest, compute: Callable[[IllusionSession], T]) -> T:
    """``compute`` on this run's session; a model or file that does not load stops the run (exit 4)."""
    try:
        return compute(_session(request.config))
    except IllusionError as exc:
        stop_run(request.session, exc)


# --- collection -----------------------------------------------------------------------------------

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
        illusion = _session(config)
        chosen += [item for item in illusion.items if item.lang in gated]  # a gate needs its whole language
        illusion.set_collected(list({item.key: item for item in chosen}.values()))


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def illusion_verdict(request: pytest.FixtureRequest, illusion_item) -> ItemVerdict:
    """The paired (candidate, reference) result of the current item; attaches its record to the report."""
    verdict = _computed(request, lambda illusion: illusion.verdict(illusion_item))
    request.node.user_properties += item_properties(verdict, illusion_item)
    return verdict


@pytest.fixture
def illusion_snapshot(request: pytest.FixtureRequest, snapshot) -> GoldRankBaseline:
    """syrupy's ``snapshot``, stored in this run's gold-rank baseline set under ``snapshots/``."""
    from .snapshots import GoldRankBaseline

    name, recorded_with = _computed(request, lambda illusion: illusion.snapshot_set)
    return GoldRankBaseline.for_test(snapshot=snapshot, node=request.node, set_name=name, recorded_with=recorded_with,
                                     tolerance=request.config.stash[CONFIG_KEY].rank_tolerance)


@pytest.fixture
def illusion_gate(request: pytest.FixtureRequest, illusion_lang: str) -> LanguageGate:
    """The paired McNemar gate of one language, over every item the options select in it. Its item
    records go to the report, so report.json and the table state the numbers the gate used."""
    from .verdict import language_gate

    items = [item for item in _session(request.config).items if item.lang == illusion_lang]
    verdicts = _computed(request, lambda illusion: illusion.verdicts(items))
    options = request.config.stash[CONFIG_KEY]
    gate = language_gate(illusion_lang, verdicts, alpha=options.alpha, max_illusion_rate=options.max_illusion_rate)
    request.node.user_properties += [("illusion_gate_p_value", gate.p_value),
                                     ("illusion_gate_illusion_rate", gate.illusion_rate)]
    request.node.stash[GATE_RECORDS_KEY] = gate_records(items, verdicts)
    return gate


# --- reports --------------------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    label_report(item, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if BROKEN_KEY in config.stash:  # xdist reports a worker's stop as an interruption (2)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    records = config.stash[RECORDS_KEY]
    if hasattr(config, "workerinput") or not records.records:
        return
    if records.snapshot_notes:
        try:
            config.stash[UNUSED_KEY] = _unused_baselines(config, records)
        except IllusionError as exc:  # a corrupted file: its tests already failed saying so
            say(config, f"unused-baseline check skipped: {exc}")
    records.write_report(config.stash[CONFIG_KEY])


def _unused_baselines(config: pytest.Config, records: RunRecords) -> list:
    from .snapshots import removes_unused, unused_baselines

    illusion = _session(config)
    return unused_baselines(notes=records.snapshot_notes.values(), selected=illusion.items, rootpath=config.rootpath,
                            remove=removes_unused(config), recorded_with=illusion.snapshot_set[1])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    records = config.stash.get(RECORDS_KEY, None)
    if records is None or not records.records:
        return
    from .snapshots import summary_lines

    lines = records.table_lines(config.stash[CONFIG_KEY])
    lines += summary_lines(list(records.snapshot_notes.values()), config.stash.get(UNUSED_KEY, []), config)
    if records.report_path:
        lines.append(f"report written to {records.report_path}")
    terminalreporter.section("benchmark-illusion")
    for line in lines:
        terminalreporter.write_line(safe_text(line))


# --- xdist ----------------------------------------------------------------------------------------

@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """On the xdist controller: the workers of this run share work through one directory."""
    if shares_files(node):
        if RUN_DIR_KEY not in node.config.stash:
            node.config.stash[RUN_DIR_KEY] = new_run_dir()
        node.workerinput[RUN_DIR_INPUT] = node.config.stash[RUN_DIR_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller: a worker that stopped the run (``session.stop_run``) makes it exit 4."""
    message = broken_run_message(node)
    if message is not None:
        node.config.stash[BROKEN_KEY] = message
