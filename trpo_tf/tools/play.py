"""python -m trpo_tf.play --policy=runs/default/policy [--env=Cartpole] [--episodes=10]
python -m trpo_tf.play --policy=runs/hopper/policy --video=hopper.mp4

Loads an exported SavedModel and prints the return of N episodes, acting deterministically
(mean / argmax) and stochastically (sampled actions); --video records one deterministic
episode instead (rendered in a child process, MuJoCo offscreen through EGL unless MUJOCO_GL
says otherwise: video.py)."""

from absl import flags

from trpo_tf.cli import check_policy_dir, main_guard, quiet_logging
from trpo_tf.errors import ConfigError

VIDEO_FORMATS = (".mp4", ".gif", ".webm", ".mkv", ".avi", ".mov")  # what imageio-ffmpeg writes

flags.DEFINE_string("policy", None, "Directory of an exported policy (SavedModel).")
flags.DEFINE_string("env", None, "Env short name or gymnasium id; default: the one it was trained on.")
flags.DEFINE_integer("episodes", 10, "Episodes per mode.", lower_bound=1)
flags.DEFINE_integer("seed", 1000, "Seed of the first episode's reset.", lower_bound=0)
flags.DEFINE_integer("max_path_length", 0, "Truncate episodes at this length; 0 = the env's limit, else 10,000 steps.", lower_bound=0)
flags.DEFINE_string("video", "", f"Record one deterministic episode to this file ({', '.join(VIDEO_FORMATS)}) instead.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    quiet_logging()

    def play():
        check_policy_dir(FLAGS.policy)  # before TensorFlow loads
        if FLAGS.video and not FLAGS.video.lower().endswith(VIDEO_FORMATS):
            raise ConfigError(f"--video={FLAGS.video}: the extension picks the format, one of "
                              f"{', '.join(VIDEO_FORMATS)}")
        from trpo_tf.run.evaluate import open_policy, run_episodes
        from trpo_tf.tools.video import record_video

        serve, spec, env = open_policy(FLAGS.policy, FLAGS.env, FLAGS.max_path_length or None)
        try:
            if FLAGS.video:
                ret, frames, replayed = record_video(serve, spec, env, FLAGS.video, FLAGS.seed,
                                                     FLAGS.max_path_length)
                print(f"{spec.gym_id}: wrote {FLAGS.video} ({frames} frames, return {ret:.1f}, "
                      f"replayed for rendering: {replayed:.1f})", flush=True)
                return
            for deterministic in (True, False):
                r = run_episodes(serve, env, FLAGS.episodes, FLAGS.seed, deterministic)
                mode = "deterministic" if deterministic else "stochastic"
                print(f"{spec.gym_id} {mode:>13}: return {r.mean():.1f} +- {r.std():.1f} "
                      f"(min {r.min():.1f}, max {r.max():.1f}) over {len(r)} episodes", flush=True)
        finally:
            env.close()

    # play acts through the SavedModel's own graphs: no Keras (TensorFlow's import loads
    # keras.src.optimizers for Keras optimizers in SavedModels, in a try / except ImportError;
    # an export holds none). A fresh play: 3.6-4.2 s of CPU against 4.4-5.2 s, 2026-12-07.
    main_guard(play, without=("keras",))

