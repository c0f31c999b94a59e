"""The benchmarks in smoke mode, so they cannot rot (their numbers are not checked here)."""
import re
import sys

import pytest

import zygote


def bench(script, *args, timeout=300):
    out = zygote.run([sys.executable, f"bench/{script}", "--smoke", *args], capture_output=True,
                     text=True, timeout=timeout, cwd=zygote.ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_sampling_bench_reports_both_rates_and_their_ratio():
    lines = bench("sampling.py", "--env=Cartpole", "--num_envs=4").strip().splitlines()
    assert len(lines) == 2  # gymnasium, envpool
    for line, backend in zip(lines, ("gymnasium", "envpool")):
        m = re.search(rf"{backend} x4: raw ([\d,]+) steps/s \| trpo_tf ([\d,]+) steps/s \| ratio ([\d.]+)", line)
        assert m, line
        raw, ours, ratio = (float(g.replace(",", "")) for g in m.groups())
        assert raw > 0 and ours > 0 and ratio == pytest.approx(ours / raw, rel=0.02, abs=0.01)
        assert "peak RSS" in line


def test_sampling_bench_on_atari_reports_frames_against_the_bare_emulator():
    (line,) = bench("sampling.py", "--env=Pong", "--backends=gymnasium", "--num_envs=4").strip().splitlines()
    m = re.search(r"raw ([\d,]+) frames/s \| trpo_tf ([\d,]+) frames/s \| ratio [\d.]+ \| "
                  r"bare ALE ([\d,]+) frames/s, trpo_tf at ([\d.]+) of it", line)
    assert m, line
    raw, ours, bare, share = (float(g.replace(",", "")) for g in m.groups())
    assert raw > 0 and ours > 0 and bare > 0 and share == pytest.approx(ours / bare, rel=0.02, abs=0.01)


@pytest.mark.parametrize("env", ["Swimmer", "Pong"])  # an MLP on vectors, the CNN on frames
def test_update_bench_reports_stages(env):
    out = bench("update.py", f"--env={env}")
    assert re.search(r"advantage [\d.]+s \| TRPO step [\d.]+s \(double backprop [\d.]+s, [\d.]+x\) \| "
                     r"value fit [\d.]+s \| total [\d.]+s", out), out


def test_vs_sb3_bench_runs_both_libraries_or_trpo_tf_alone():
    out = bench("vs_sb3.py", "--env=Cartpole", timeout=600)
    assert re.search(r"trpo_tf seed 0: +[\d.]+ s wall \| +[\d,]+ steps/s", out), out
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        assert "running trpo_tf alone" in out
    else:
        assert re.search(r"sb3 seed 0: +[\d.]+ s wall", out) and "trpo_tf / SB3:" in out, out


def test_vs_sb3_merge_reuses_sb3_runs_of_any_trpo_config_and_trpo_runs_of_the_same_one():
    from bench.common import merged_runs

    def record(flags, runs, env="Hopper", steps=1000):
        return {"bench": "vs_sb3", "env": env, "steps": steps, "trpo_flags": flags,
                "runs": [{"library": lib, "seed": seed} for lib, seed in runs]}

    records = [{"bench": "sampling"},
               record(["batch_steps=10000"], [("sb3", 0), ("trpo_tf", 0), ("sb3", 1), ("trpo_tf", 1)]),
               record(["batch_steps=5000"], [("trpo_tf", 1), ("trpo_tf", 2)]),
               record(["batch_steps=5000"], [("sb3", 0), ("trpo_tf", 3)], env="Walker"),
               record(["batch_steps=5000"], [("sb3", 5)], steps=2000)]
    current = [{"library": "sb3", "seed": 1}, {"library": "trpo_tf", "seed": 2}]
    added = merged_runs(records, "Hopper", 1000, ["batch_steps=5000"], current)
    assert sorted((r["library"], r["seed"]) for r in added) == [("sb3", 0), ("trpo_tf", 1)]
