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
