"""Models bigger than one device: --illusion-device-map and --illusion-max-memory.

The options are checked before anything loads; a model placed by accelerate (here: SmolLM2 with
most of its blocks offloaded to disk) gives exactly the results it gives in memory, which is why
placement is in no cache key; the offload folder goes when the model is freed.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import illusion.session
from illusion.errors import ConfigError
from illusion.models import MEMORY_UNITS, check_placement, parse_max_memory

DEVICES = st.one_of(st.integers(0, 15), st.sampled_from(["cpu", "disk"]))


@given(budget=st.dictionaries(DEVICES, st.tuples(st.integers(1, 4096), st.sampled_from(sorted(MEMORY_UNITS))),
                              min_size=1, max_size=5),
       cuda_prefix=st.booleans())
def test_max_memory_reads_every_device_and_unit_in_bytes(budget, cuda_prefix):
    def key(device):
        return f"cuda:{device}" if cuda_prefix and isinstance(device, int) else str(device)

    text = ",".join(f"{key(device)}={number}{unit.lower() if number % 2 else unit}"
                    for device, (number, unit) in budget.items())
    assert parse_max_memory(text) == {device: number * MEMORY_UNITS[unit] for device, (number, unit) in budget.items()}


@pytest.mark.parametrize("text, message", [
    ("cpu", "entry 'cpu' is not DEVICE=SIZE; write e.g. 0=70GiB,1=70GiB,cpu=200GiB"),
    ("0=70GiB,,cpu=1GiB", "entry '' is not DEVICE=SIZE"),
    ("gpu0=70GiB", "unknown device 'gpu0'; use a GPU index (0, 1, ...), cpu or disk"),
    ("cpu=lots", "size 'lots' is not a number of bytes or a number with a unit"),
    ("cpu=70 GiBs", "size '70 GiBs' is not a number"),
    ("cpu=0GiB", "size '0GiB' is zero"),
    ("0=1GiB,cuda:0=2GiB", "'cuda:0' is given twice; give each device once"),
])
def test_bad_max_memory_names_the_entry_and_the_fix(text, message):
    with pytest.raises(ConfigError) as raised:
        check_placement("auto", text)
    assert str(raised.value).startswith(f"--illusion-max-memory {text!r}: ") and message in str(raised.value)


def test_device_map_is_one_of_accelerates_strategies_and_max_memory_needs_it():
    with pytest.raises(ConfigError, match=r"--illusion-device-map 'fast': choose auto, balanced, sequential"):
        check_placement("fast", None)
    with pytest.raises(ConfigError, match=r"--illusion-max-memory 'cpu=1GiB' needs --illusion-device-map"):
        check_placement(None, "cpu=1GiB")
    for device_map in ("auto", "Balanced", " sequential "):
        check_placement(device_map, "0=70GiB,cpu=200GiB")


@pytest.mark.parametrize("ini, args, message", [
    ("", ("--illusion-device-map", "everywhere"), "--illusion-device-map 'everywhere': choose auto, balanced"),
    ("illusion_max_memory = cpu=2GiB\n", (), "--illusion-max-memory 'cpu=2GiB' needs --illusion-device-map"),
    ("illusion_device_map = auto\n", ("--illusion-max-memory", "cpu=2 bytes"), "size '2 bytes' is not a number"),
])
def test_bad_placement_options_are_usage_errors_before_anything_loads(pytester, ini, args, message):
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_placement_is_in_no_store_key(tiny_dir):
    from illusion.session import IllusionSession, RunConfig

    def keys(**options):
        session = IllusionSession(RunConfig(model=str(tiny_dir), dtype="float32", device="cpu", **options))
        return [session._store_keys(side, recovered=done) for side, done in (("reference", False), ("candidate", True))]

    assert keys() == keys(device_map="auto", max_memory="cpu=150MiB") == keys(device_map="sequential")


def test_smollm2_offloaded_to_disk_gives_the_in_memory_results(shared_cache, monkeypatch):
    """cpu=150MiB holds the embeddings and a block or two of SmolLM2's 30 (538 MB in float32): the
    rest is read from disk at each forward, through accelerate's hooks."""
    from illusion.models import OFFLOAD_DIR
    from illusion.paths import cache_root
    from illusion.session import IllusionSession, RunConfig

    monkeypatch.setenv("ILLUSION_CACHE", str(shared_cache))
    maps: list[dict] = []
    real = illusion.session.load_model

    def watched(spec, **options):
        loaded = real(spec, **options)
        maps.append(dict(getattr(loaded.model, "hf_device_map", {})))
        return loaded

    monkeypatch.setattr(illusion.session, "load_model", watched)

    def run(**placement):
        config = RunConfig(langs=("en",), limit_per_lang=2, device="cpu", dtype="float32", max_new_tokens=8,
                           use_store=False, **placement)
        session = IllusionSession(config)
        session.set_collected(session.items)
        verdicts = session.verdicts(session.items)
        session.release()
        return verdicts

    in_memory = run()
    offloaded = run(device_map="auto", max_memory="cpu=150MiB")
    assert maps[0] == {} and "disk" in maps[1].values() and "cpu" in maps[1].values()
    assert sum(device == "disk" for device in maps[1].values()) >= 20  # most blocks really are on disk
    assert offloaded == in_memory  # verdicts, ranks, MC scores (exactly: the same float32 ops), outputs
    assert all(v.candidate.generation for v in offloaded)
    assert not any((cache_root() / OFFLOAD_DIR).iterdir())  # the offload folder went with the model
