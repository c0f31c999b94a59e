"""Figure 4 tooling: plots from event files, multi-seed launches, the natural-gradient sweep,
videos of exported policies."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zygote
from trpo_tf.tools import figures


def write_run(logdir, returns):
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step, r in enumerate(returns, start=1):
            tf.summary.scalar("Train/EpisodeReturnMean", r, step=step)
    writer.close()


@pytest.fixture
def fixture_logdir(tmp_path):
    """2 tasks x 2 methods x 2 seeds, returns rising linearly at known rates."""
    for task in ("cartpole", "swimmer"):
        for algo, slope in (("trpo", 2.0), ("cem", 1.0)):
            for seed in (0, 1):
                write_run(tmp_path / task / algo / f"seed_{seed}",
                          [slope * t + seed for t in range(1, 11)])
    return tmp_path


def run_module(module, *args, timeout=300, fresh=False):
    return zygote.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                      timeout=timeout, fresh=fresh)


def test_runs_are_grouped_by_task_and_method_and_averaged_over_seeds(fixture_logdir):
    data = figures.curves(figures.find_runs(str(fixture_logdir)), "Train/EpisodeReturnMean")
    assert sorted(data) == [("cartpole", "cem"), ("cartpole", "trpo"), ("swimmer", "cem"),
                            ("swimmer", "trpo")]
    steps, values = data[("cartpole", "trpo")]
    np.testing.assert_array_equal(steps, np.arange(1, 11))
    np.testing.assert_allclose(values.mean(0), 2.0 * np.arange(1, 11) + 0.5)
    rows = {(p, l): (n, m, s) for p, l, n, m, s in figures.final_values(data, window=2)}
    assert rows[("swimmer", "cem")] == (2, pytest.approx(10.0), pytest.approx(0.5 ** 0.5))
    assert figures.mean_and_spread(10.0, 0.5 ** 0.5, 2) == "10.0 +- 0.7"
    assert figures.mean_and_spread(40.3, 0.0, 1) == "40.3 (one seed)"  # not "+- 0.0"
    assert figures.uneven_seeds(data) == []
    # a third seed that ran longer (or one still running): each seed's own last iterations
    write_run(fixture_logdir / "cartpole" / "cem" / "seed_2", [t + 2.0 for t in range(1, 15)])
    data = figures.curves(figures.find_runs(str(fixture_logdir)), "Train/EpisodeReturnMean")
    steps, values = data[("cartpole", "cem")]
    np.testing.assert_array_equal(steps, np.arange(1, 15))
    assert np.isnan(values[:2, 10:]).all() and not np.isnan(values[2]).any()
    rows = {(p, l): (n, m, s) for p, l, n, m, s in figures.final_values(data, window=2)}
    assert rows[("cartpole", "cem")] == (3, pytest.approx((9.5 + 10.5 + 15.5) / 3),
                                         pytest.approx(np.std([9.5, 10.5, 15.5], ddof=1)))
    assert figures.uneven_seeds(data) == ["cartpole/cem: its seeds end at iterations 10, 10, 14"]
    # a run with no value of the tag yet (no episode ended) is left out, and named
    writer = tf.summary.create_file_writer(str(fixture_logdir / "swimmer" / "cem" / "seed_2"))
    with writer.as_default():
        tf.summary.scalar("Train/EnvSteps", 1.0, step=1)
    writer.close()
    missing = []
    again = figures.curves(figures.find_runs(str(fixture_logdir)), "Train/EpisodeReturnMean",
                           missing=missing)
    assert len(again[("swimmer", "cem")][1]) == 2
    assert missing == [str(fixture_logdir / "swimmer" / "cem" / "seed_2")]


def test_plot_cli_writes_png_and_svg_and_prints_final_values(fixture_logdir, tmp_path):
    png, svg = tmp_path / "fig.png", tmp_path / "fig.svg"
    out = run_module("trpo_tf.plot", f"--logdir={fixture_logdir}", f"--out={png},{svg}", "--cost",
                     fresh=True)  # a fresh interpreter: matplotlib's start-up too
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert b"<svg" in svg.read_bytes()[:500]
    assert "| cartpole | trpo | 2 | -16.5 +- 0.7 |" in out.stdout  # cost = -return, last 5
    assert out.stderr.strip() == ""
    bad = run_module("trpo_tf.plot", f"--logdir={tmp_path / 'nothing'}")
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
    for args, line in ((["--out=x.png"], "error: --logdir is required"),
                       ([f"--logdir={fixture_logdir}", "--out="], "error: --out is empty")):
        bad = run_module("trpo_tf.plot", *args)
        assert bad.returncode == 2 and bad.stderr.startswith(line), bad.stderr


def test_seeds_flag_runs_each_seed_in_its_own_directory(tmp_path):
    out = run_module("trpo_tf.launch", "--env=Cartpole", "--iterations=1", "--batch_steps=200",
                     "--num_envs=2", "--seeds=2", "--seed=5", f"--logdir={tmp_path}", "--quiet")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(tmp_path)) == ["seed_5", "seed_6"]
    assert all(os.path.isfile(tmp_path / s / "policy" / "saved_model.pb") for s in ("seed_5", "seed_6"))


def test_npg_sweep_stops_on_ctrl_c_then_trains_each_step_names_the_best_and_rereads_it(tmp_path):
    args = ["--env=Cartpole", "--iterations=2", "--batch_steps=400", "--num_envs=2",
            "--npg_steps=0.01,1", f"--logdir={tmp_path}"]
    cut = zygote.Popen([sys.executable, "-m", "trpo_tf.sweep", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    for line in cut.stdout:  # the first value's first iteration: one Ctrl-C stops the sweep
        if line.startswith("it "):
            break
    cut.send_signal(signal.SIGINT)
    out, err = cut.communicate(timeout=300)
    assert cut.returncode == 0, err
    assert "sweep stopped: run the same command to go on" in out and "npg_step 1," not in out
    tables = []
    for _ in range(2):  # the second run reads the finished runs back
        done = run_module("trpo_tf.sweep", *args, "--quiet")
        assert done.returncode == 0, done.stderr
        tables.append([line for line in done.stdout.splitlines() if line.startswith(("|", "best"))])
    assert sorted(os.listdir(tmp_path)) == ["npg_0.01", "npg_1"]
    assert tables[0][2].startswith("| 0.01 | ") and tables[0][3].startswith("| 1 | ")
    assert "inf" not in "".join(tables[0]) and tables[1] == tables[0]
    assert tables[0][-1].startswith("best --npg_step=")
    empty = run_module("trpo_tf.sweep", "--npg_steps=", f"--logdir={tmp_path}")
    assert empty.returncode == 2 and empty.stderr.strip().splitlines() == [
        "error: --npg_steps is empty: give the steps to try, e.g. 0.01,0.03,0.1"]


def test_play_records_a_video_whose_replay_is_the_episode_played(tmp_path):
    from trpo_tf.distributions import DiagGaussian
    from trpo_tf.run.export import export_policy
    from trpo_tf.policies import build_policy

    policy = build_policy((4,), DiagGaussian(1), (), normalize_obs=False)
    export_policy(policy, policy.dist, tf.TensorSpec((None, 4), tf.float32),
                  "InvertedPendulum-v5", str(tmp_path / "policy"))
    video = tmp_path / "episode.mp4"
    out = run_module("trpo_tf.play", f"--policy={tmp_path}/policy", f"--video={video}",
                     "--max_path_length=60")
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    frames = int(line.split("(")[1].split(" frames")[0])
    played, replayed = line.split("return ")[1].split(",")[0], line.split("rendering: ")[1][:-1]
    assert played == replayed and frames >= 2
    assert video.stat().st_size > 1000
    import imageio

    assert len(imageio.mimread(video, memtest=False)) == frames
