"""Videos of an episode, rendered in a process of their own.

Mesa's software OpenGL (EGL / OSMesa, what headless MuJoCo rendering uses) crashes in a
process that has loaded TensorFlow, so `play --video` acts with the policy first, keeping
the actions (record_video, in play's process), then this module, run as a child process that
never imports TensorFlow, replays them from the same reset seed, rendering every frame: the
simulators are deterministic, so the replay is the episode that was played.

    python -m trpo_tf.tools.video REPLAY.npz   # written by write_replay; used by play --video
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco loads: headless offscreen rendering


def render_replay(gym_id, settings, max_path_length, seed, actions, path, fps):
    """Reset the env with `seed`, step through `actions`, write every rendered frame ->
    (frames, the replay's return)."""
    import imageio

    from trpo_tf import envs

    env = envs.make_env(envs.settings_spec(gym_id, settings), max_path_length or None,
                        render_mode="rgb_array")
    env.reset(seed=seed)
    frames, total = [env.render()], 0.0
    for action in actions:
        total += env.step(action)[1]
        frames.append(env.render())
    env.close()
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
    return len(frames), total


def write_video(spec, max_path_length, seed, actions, path, fps):
    """Render the replay of `actions` into `path` in a child process -> (frames written, the
    replay's return). Raises EnvError with the child's last error line if rendering failed."""
    from trpo_tf import envs
    from trpo_tf.errors import EnvError

    with tempfile.TemporaryDirectory() as tmp:
        replay = os.path.join(tmp, "replay.npz")
        meta = {"gym_id": spec.gym_id, "max_path_length": max_path_length,
                "settings": envs.env_settings(spec),
                "seed": seed, "path": os.path.abspath(path), "fps": fps}
        np.savez(replay, actions=np.asarray(actions), meta=json.dumps(meta))
        out = subprocess.run([sys.executable, "-m", "trpo_tf.tools.video", replay],
                             capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        hint = ("; headless MuJoCo needs MUJOCO_GL=egl (libegl1, libgl1-mesa-dri) or osmesa "
                "(libosmesa6), see BUILD_NOTES.md" if envs.is_mujoco(spec.gym_id) else "")
        raise EnvError(f"--video: rendering {spec.gym_id} failed ({last}){hint}")
    frames, ret = out.stdout.split()[-2:]
    return int(frames), float(ret)


def record_video(serve, spec, env, path, seed, max_path_length=None):
    """Play one deterministic episode and write its video to `path` (video.py renders a
    replay of its actions) -> (the episode's return, frames written, the replay's return,
    which equals the first: the simulators are deterministic)."""
    from trpo_tf.run.evaluate import run_episodes

    actions = []
    ret = run_episodes(serve, env, 1, seed, True, actions)[0]
    fps = (60.0 / spec.atari.frame_skip if spec.atari is not None  # a 60 Hz console
           else float(env.metadata.get("render_fps") or 30))
    return (ret, *write_video(spec, max_path_length, seed, actions, path, fps))


def main(replay_path):
    data = np.load(replay_path)
    meta = json.loads(str(data["meta"]))
    frames, ret = render_replay(meta["gym_id"], meta["settings"], meta["max_path_length"],
                                meta["seed"], data["actions"], meta["path"], meta["fps"])
    print(frames, repr(float(ret)))  # a NumPy scalar's repr is np.float64(...)


if __name__ == "__main__":
    main(sys.argv[1])
