"""torch.compile's cache: one folder per torch version and hardware kind beside the results, the user's own folder
respected, and a second fit of the same network in a new process compiling from it (slow)."""

import json
import os
import subprocess
import sys

import pytest

from attnplace.train.compiling import compile_cache_dir, use_compile_cache

XEON = "Intel(R) Xeon(R) Processor, torch kernels AVX512"


def test_the_cache_folder_is_per_torch_version_and_hardware_kind(tmp_path):
    """Another torch version or another CPU's kernels never read this one's entries: they have folders of their
    own. attnplace's source is not in the name, so a new commit starts warm."""
    here = compile_cache_dir(tmp_path, XEON, "2.14.1")
    assert here == tmp_path / ".compile-cache" / "torch-2.14.1" / "intel-r-xeon-r-processor-torch-kernels-avx512"
    assert compile_cache_dir(tmp_path, XEON, "2.11.0") != here  # a stale entry of another torch is not found
    assert compile_cache_dir(tmp_path, "AMD EPYC, torch kernels AVX2", "2.14.1") != here


def test_the_users_own_cache_folder_wins_and_ours_moves_with_the_run(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what torch writes there on import
    assert use_compile_cache(tmp_path / "a" / ".compile-cache" / "x") == (tmp_path / "a/.compile-cache/x").resolve()
    assert use_compile_cache(tmp_path / "b" / ".compile-cache" / "x") == (tmp_path / "b/.compile-cache/x").resolve()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache(tmp_path / "c" / ".compile-cache" / "x") == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


@pytest.mark.slow
def test_a_second_fit_of_the_same_network_in_a_new_process_compiles_from_the_cache(tmp_path):
    """The first fit compiles cold (about a minute on 2 cores), the second, a new process, reads every graph from
    the cache beside the results. Evaluation compiles its no_grad graph once per run (1 recompile), and the
    test reuses it."""
    def fit(run: str) -> dict:
        args = ["data.name=synthetic", "data.path=null", "data.val_size=100", "data.batch_size=50",
                "data.synthetic={num_train: 400, num_test: 100, image_size: 16}", "trainer.max_epochs=2",
                "trainer.compile=true", "trainer.progress_bar=false", "optim.warmup_epochs=0",
                f"output_dir={tmp_path}", f"run_dir={tmp_path / run}"]
        env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
        subprocess.run([sys.executable, "-m", "attnplace.cli", "fit", *args], check=True, capture_output=True, env=env)
        return json.loads((tmp_path / run / "record.json").read_text())["sessions"][-1]["compile"]

    cold, warm = fit("first"), fit("second")
    assert (cold["cache"], warm["cache"]) == ("cold", "warm")
    assert warm["seconds"] < cold["seconds"] / 4
    assert cold["cache_dir"] == warm["cache_dir"] and cold["cache_dir"].startswith(str(tmp_path / ".compile-cache"))
    assert warm["recompiles"] == cold["recompiles"] == 1 and "grad_mode" in warm["recompile_reasons"][0]


def compile_failure(message: str) -> Exception:
    """What torch raises when a compiled graph's module, loaded from a truncated cache entry, lacks its code."""
    from torch._dynamo.exc import BackendCompilerFailed

    err = BackendCompilerFailed.__new__(BackendCompilerFailed)  # its constructor's arguments vary across torch
    Exception.__init__(err, f"backend='inductor' raised:\n{message}\n\n"
                            "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace")
    return err


def test_a_compile_failure_with_a_cache_found_on_disk_moves_the_cache_aside(tmp_path):
    from attnplace.train.compiling import cache_fault, cache_identity

    folder = tmp_path / ".compile-cache" / "kind"
    assert cache_identity(folder) is None
    failure = compile_failure("AttributeError: module 'torch._inductor.runtime.compile_tasks.cx' "
                              "has no attribute 'call'")
    assert cache_fault(failure, folder, None) is None  # a run that started cold cannot blame the cache
    folder.mkdir(parents=True)
    (folder / "entry.py").write_text("")
    found = cache_identity(folder)
    assert cache_fault(ValueError("bad shapes"), folder, found) is None  # not a compile failure
    fault = cache_fault(failure, folder, found)
    (aside,) = (tmp_path / ".compile-cache").iterdir()
    assert aside.name.startswith("kind.unreadable-") and (aside / "entry.py").exists() and not folder.exists()
    assert str(fault) == (f"the compile cache {folder} could not be read (AttributeError: module "
                          "'torch._inductor.runtime.compile_tasks.cx' has no attribute 'call'); "
                          f"moved to {aside.name}, compiling afresh")
    folder.mkdir()  # another run sharing the cache has already replaced it: the new one stays
    cache_fault(failure, folder, found)
    assert folder.exists() and len(list((tmp_path / ".compile-cache").iterdir())) == 2


@pytest.mark.slow
def test_a_truncated_compile_cache_is_moved_aside_and_the_run_compiles_afresh(tmp_path):
    """A disk that filled while the cache was written leaves its modules cut short: the next compiled run says so
    in one line, moves the cache aside, compiles afresh and completes (two cold compiles: a few minutes)."""
    def fit(run: str) -> subprocess.CompletedProcess:
        args = ["data.name=synthetic", "data.path=null", "data.val_size=100", "data.batch_size=50",
                "data.synthetic={num_train: 200, num_test: 100, image_size: 16}", "trainer.max_epochs=1",
                "trainer.compile=true", "trainer.progress_bar=false", "optim.warmup_epochs=0",
                f"output_dir={tmp_path}", f"run_dir={tmp_path / run}"]
        env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
        return subprocess.run([sys.executable, "-m", "attnplace.cli", "fit", *args], capture_output=True, text=True,
                              env=env)

    assert fit("first").returncode == 0
    (cache,) = (tmp_path / ".compile-cache").glob("torch-*/*")
    modules = list(cache.rglob("*.py"))
    for module in modules:
        module.write_text("")
    second = fit("second")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stderr.splitlines() if "compile cache" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'second'}: the compile cache {cache} could not be "
                                                   "read (AttributeError: module 'torch._inductor.runtime.compile_")
    (aside,) = cache.parent.glob(f"{cache.name}.unreadable-*")
    assert len(list(aside.rglob("*.py"))) == len(modules) and cache.is_dir()  # the new cache, compiled afresh
    record = json.loads((tmp_path / "second" / "record.json").read_text())
    assert record["status"] == "completed" and record["sessions"][-1]["compile"]["cache"] == "cold"
    assert record["sessions"][-1]["compile_cache_note"] == lines[0].split(": ", 1)[1]
