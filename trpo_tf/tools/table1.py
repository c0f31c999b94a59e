"""python -m trpo_tf.table1 --policy=runs/pong/policy [--episodes=30]

Scores an exported Atari policy over N episodes (with the preprocessing it trained with)
and prints a Table 1-style row beside the paper's rows for that game."""
from absl import flags

from trpo_tf.cli import check_policy_dir, main_guard, quiet_logging

flags.DEFINE_string("policy", None, "Directory of an exported Atari policy (SavedModel).")
flags.DEFINE_integer("episodes", 30, "Episodes to score.", lower_bound=1)
flags.DEFINE_integer("seed", 1000, "Seed of the first episode's reset.", lower_bound=0)
flags.DEFINE_boolean("deterministic", False, "Act by argmax instead of sampling from the policy.")
flags.DEFINE_integer("max_path_length", 0, "Truncate episodes at this many agent steps; 0 = ALE's own limit.", lower_bound=0)
FLAGS = flags.FLAGS

# Table 1 of the paper (section 8.2).
PAPER_ROWS = ("Random", "Human (Mnih et al., 2013)", "Deep Q Learning (Mnih et al., 2013)",
              "UCC-I (Guo et al., 2014)", "TRPO - single path", "TRPO - vine")
PAPER_TABLE1 = {
    "BeamRider": (354, 7456, 4092, 5702, 1425.2, 859.5),
    "Breakout": (1.2, 31.0, 168.0, 380, 10.8, 34.2),
    "Enduro": (0, 368, 470, 741, 534.6, 430.8),
    "Pong": (-20.4, -3.0, 20.0, 21, 20.9, 20.9),
    "Qbert": (157, 18900, 1952, 20025, 1973.5, 7732.5),
    "Seaquest": (110, 28010, 1705, 2995, 1908.6, 788.4),
    "SpaceInvaders": (179, 3690, 581, 692, 568.4, 450.2),
}


def game_name(gym_id):
    """ALE/SpaceInvaders-v5 -> SpaceInvaders."""
    return gym_id.split("/")[-1].split("-v")[0]


def table1_rows(game, scores, label="trpo_tf (this policy)"):
    """Markdown rows: the paper's for `game` (if it is one of Table 1's), then ours."""
    lines = [f"| {game} | mean score | std | episodes |", "|---|---|---|---|"]
    for name, value in zip(PAPER_ROWS, PAPER_TABLE1.get(game, ())):
        lines.append(f"| {name} | {value} | | |")
    lines.append(f"| {label} | {scores.mean():.1f} | {scores.std():.1f} | {len(scores)} |")
    return "\n".join(lines)


def main(argv):
    del argv
    quiet_logging()

    def score():
        check_policy_dir(FLAGS.policy)  # before TensorFlow loads
        from trpo_tf.envs import EnvError
        from trpo_tf.run.evaluate import open_policy, run_episodes

        serve, spec, env = open_policy(FLAGS.policy, None, FLAGS.max_path_length or None)
        try:
            if spec.atari is None:
                raise EnvError(f"--policy={FLAGS.policy} was trained on {spec.gym_id}, not an "
                                 "Atari game; use trpo_tf.play for it")
            scores = run_episodes(serve, env, FLAGS.episodes, FLAGS.seed, FLAGS.deterministic)
        finally:
            env.close()
        label = "trpo_tf (this policy" + (
            f", episodes cut at {FLAGS.max_path_length} steps)" if FLAGS.max_path_length else ")")
        print(table1_rows(game_name(spec.gym_id), scores, label), flush=True)

    main_guard(score, without=("keras",))  # as play: the SavedModel's graphs act

