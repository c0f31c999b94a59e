"""tf.train.Checkpoint + CheckpointManager: the policy (its normaliser statistics inside), what
the method owns (the value net, its optimiser and shuffling RNG, PPO's Adam ...), the
iteration / env-step counters, the metrics of the iterations since the previous checkpoint
(so TensorBoard can be filled in after a kill), and beside it a pickle of the sampler's state
where the envs can be saved.

Nothing in the checkpoint directory is overwritten or lost by the tool:
- a checkpoint is written only if every variable in it is finite;
- a save that fails (a full disk) leaves the previous checkpoint current and no temporary
  files, and stops the run with one line;
- on resume, each checkpoint on disk is checked newest first (index file, data, values,
  sampler state); damaged ones are moved to `damaged-<k>/` and the newest intact one is
  restored, with one line saying so; if none is intact the run stops with one line.
"""
import glob
import importlib
import json
import os
import pickle
import re
import shutil

import tensorflow as tf

from trpo_tf.errors import CheckpointError, first_line
from trpo_tf.graph import traced
from trpo_tf.run import outputs

INDEX = "checkpoint"  # TensorFlow's text index of the checkpoints
INDEX_LINE = re.compile(r'^(model_checkpoint_path|all_model_checkpoint_paths): "ckpt-\d+"$'
                        r'|^(all_model_checkpoint_timestamps|last_preserved_timestamp): [0-9.e+-]+$')
# Modules whose classes sampler pickles name, since moved: old checkpoints still resume.
MOVED_MODULES = {"trpo_tf.derivative_free": ("trpo_tf.methods.cem", "trpo_tf.methods.cma",
                                             "trpo_tf.sampling.population")}


class SamplerUnpickler(pickle.Unpickler):
    """pickle.load that finds a class under the module it moved to (MOVED_MODULES)."""

    def find_class(self, module, name):
        for new in MOVED_MODULES.get(module, ()):
            found = getattr(importlib.import_module(new), name, None)
            if found is not None:
                return found
        return super().find_class(module, name)


def variables_of(trackable):
    """The variables a model or optimizer (.variables) or a tf.random.Generator (.state) holds."""
    return [trackable.state] if isinstance(trackable, tf.random.Generator) else list(trackable.variables)


class Checkpointer:
    def __init__(self, directory, policy, method_trackables, max_to_keep=3):
        """The policy and what the method owns (`method_trackables`, Method.trackables: the
        value net, optimisers, RNGs), saved under their names beside the counters."""
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.metrics = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            policy=policy, iteration=self.iteration, env_steps=self.env_steps,
            metrics=self.metrics, **method_trackables)
        # everything an update may change: a faulty iteration is rolled back over these
        self.state_variables = [v for t in (policy, *method_trackables.values())
                                for v in variables_of(t)]
        self._manager = None
        self._finite = None  # all_finite's traced check
        self.recovery = None  # the line to print when resume skipped damaged checkpoints

    @property
    def manager(self):
        """Made once the directory's index is known to be readable (a garbled index would
        make TensorFlow log warnings and start over)."""
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                       self.max_to_keep)
        return self._manager

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _sampler_path(self, iteration):
        return self._path(f"sampler-{iteration}.pkl")

    def numbers_on_disk(self):
        """Checkpoint numbers that have any file here, newest first."""
        names = os.listdir(self.directory) if os.path.isdir(self.directory) else []
        found = {int(m.group(1)) for n in names
                 if (m := re.match(r"(?:ckpt|sampler)-(\d+)(?:\.|_temp)", n))}
        return sorted(found, reverse=True)

    def read_index(self):
        """(why the index file cannot be trusted or None, the checkpoint number it names or
        None); an absent index is no problem."""
        path = self._path(INDEX)
        if not os.path.exists(path):
            return None, None
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines or not all(INDEX_LINE.match(line) for line in lines) \
                or not lines[0].startswith("model_checkpoint_path"):
            return "the index file 'checkpoint' is unreadable", None
        named = int(lines[0].split('"ckpt-')[1].rstrip('"'))
        if not os.path.exists(self._path(f"ckpt-{named}.index")):
            return f"the index names ckpt-{named}, whose files are missing", named
        return None, named

    def all_finite(self):
        """No NaN or Inf in any state variable: one traced call over all of them (an eager
        check per variable cost ~7 ms an iteration, and it runs twice per iteration)."""
        if self._finite is None:
            floating = [v for v in self.state_variables if tf.as_dtype(v.dtype).is_floating]
            self._finite = traced(lambda: tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floating])))
        return bool(self._finite())

    def saved_fields(self):
        """The JSON record of the restored checkpoint: {"pending": [(iteration, metrics)]
        logged since the checkpoint before it, "sampler_state": whether a sampler pickle goes
        with it}; checkpoints written before 2026-11-30 hold the bare list."""
        fields = json.loads(self.metrics.numpy().decode())
        return {"pending": fields} if isinstance(fields, list) else fields

    def try_restore(self, number, expect_sampler):
        """Restore checkpoint `number` -> (None, sampler state) if it is intact, else (what is
        wrong with it, None). Whether a sampler state belongs to it is recorded in it (older
        checkpoints: `expect_sampler`, whether any sampler pickle is in the directory)."""
        prefix = self._path(f"ckpt-{number}")
        if not os.path.exists(prefix + ".index") or not glob.glob(prefix + ".data-*"):
            return "its index or data file is missing", None
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as err:  # TensorFlow's reader: OpError, IndexError, ValueError, ...
            return f"cannot be read ({first_line(err)})", None
        if not self.all_finite():
            return "holds non-finite values", None
        saved = self.saved_fields().get("sampler_state", expect_sampler)
        if not saved:
            return None, None
        try:
            with open(self._sampler_path(number), "rb") as f:
                return None, SamplerUnpickler(f).load()
        except FileNotFoundError:
            return "its sampler state is missing", None
        except Exception as err:  # truncated, empty or garbled pickle
            return f"its sampler state is unreadable ({type(err).__name__})", None

    def set_aside(self, numbers, index_damaged):
        """Move the files of checkpoints `numbers` (and a damaged index) to damaged-<k>/."""
        names = [INDEX] if index_damaged else []
        for n in numbers:
            names += [os.path.basename(p) for p in glob.glob(self._path(f"ckpt-{n}.*"))
                      + glob.glob(self._path(f"ckpt-{n}_temp*")) + [self._sampler_path(n)]]
        names = [n for n in names if os.path.lexists(self._path(n))]
        return outputs.move_into_new_dir(self.directory, outputs.SET_ASIDE[1], names)

    def restore_latest(self):
        """Restore the newest intact checkpoint, if any. Returns (iterations done, env steps
        done, [(iteration, metrics)] logged since the previous checkpoint, sampler state or None).
        Damaged checkpoints are set aside (self.recovery says so); none intact: CheckpointError."""
        numbers = self.numbers_on_disk()
        index_problem, named = self.read_index()
        if not numbers and index_problem is None:
            return 0, 0, [], None
        expect_sampler = bool(glob.glob(self._path("sampler-*.pkl")))
        damage, restored, sampler_state = [], None, None
        for n in numbers:
            problem, sampler_state = self.try_restore(n, expect_sampler)
            if problem is None:
                restored = n
                break
            if os.path.exists(self._path(f"ckpt-{n}.index")):  # a save cut short is not damage
                damage.append(f"ckpt-{n} {problem}")
        if restored is None:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: "
                f"{'; '.join(filter(None, [index_problem, *damage])) or 'only unfinished saves'}. "
                "Nothing was changed; --resume=never starts over (this run moves to "
                "<logdir>/previous-<k>/)")
        newer = [n for n in numbers if n > restored]
        if damage or index_problem or newer or named != restored:
            if newer or index_problem:
                where = self.set_aside(newer, index_problem is not None)
            self.rewrite_index(restored)  # a save killed after its files, before the index
            if damage or index_problem:
                self.recovery = (f"checkpoints: {'; '.join(filter(None, [index_problem, *damage]))}; "
                                 f"resuming from ckpt-{restored}, the newest intact one (the "
                                 f"damaged files are in {where})")
        iteration = int(self.iteration.numpy())
        metrics = [tuple(x) for x in self.saved_fields()["pending"]]
        return iteration, int(self.env_steps.numpy()), metrics, sampler_state

    def rewrite_index(self, newest):
        """Point the index at `newest` and the intact checkpoints before it, as TensorFlow
        writes it: names relative to the directory, and their times (without them the manager
        would not know them, and never rotate them out)."""
        kept = sorted(n for n in self.numbers_on_disk() if n <= newest)[-self.max_to_keep:]
        times = [os.path.getmtime(self._path(f"ckpt-{n}.index")) for n in kept]
        lines = [f'model_checkpoint_path: "ckpt-{newest}"']
        lines += [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in kept]
        lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
        lines += [f"last_preserved_timestamp: {min(times) - 1.0!r}"]
        tmp = self._path(INDEX + ".tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self._path(INDEX))

    def save(self, iteration, env_steps, metrics, sampler_state, extra=None):
        """metrics: [(iteration, dict)] since the last save; extra: JSON-able fields the loop
        keeps across a resume (saved_fields() gives them back). The sampler pickle goes first
        (atomically); the checkpoint index, written last by TensorFlow, makes both current.
        Non-finite variables are never written; a failed write (a full disk) leaves the previous
        checkpoint current and no partial files: CheckpointError either way."""
        if not self.all_finite():
            raise CheckpointError(
                f"iteration {iteration} left non-finite values in the policy, value net or "
                f"optimiser; not checkpointed (ckpt-{int(self.iteration.numpy())} in "
                f"{self.directory} is the last one)")
        previous = int(self.iteration.numpy())
        try:
            if sampler_state is not None:
                tmp = self._sampler_path(iteration) + ".tmp"
                os.makedirs(self.directory, exist_ok=True)
                with open(tmp, "wb") as f:
                    pickle.dump(sampler_state, f)
                os.replace(tmp, self._sampler_path(iteration))
            self.iteration.assign(iteration)
            self.env_steps.assign(env_steps)
            self.metrics.assign(json.dumps({**(extra or {}), "pending": metrics,
                                            "sampler_state": sampler_state is not None}))
            path = self.manager.save(checkpoint_number=iteration)
        except (OSError, tf.errors.OpError) as err:
            self.iteration.assign(previous)
            self.discard_partial_save(iteration)
            reason = getattr(err, "strerror", None) or first_line(err)
            raise CheckpointError(
                f"checkpoint {iteration} could not be written to {self.directory} ({reason}); "
                f"ckpt-{previous} is intact: the same command resumes from it once the "
                "directory can be written (space, permissions)"
                if previous else f"checkpoint {iteration} could not be written to "
                f"{self.directory} ({reason})") from None
        kept = {self._sampler_path(int(p.rsplit("-", 1)[1])) for p in self.manager.checkpoints}
        for stale in set(glob.glob(self._path("sampler-*.pkl"))) - kept:
            os.remove(stale)
        return path

    def discard_partial_save(self, iteration):
        """Remove what a failed save of `iteration` wrote (never another checkpoint's files)."""
        for path in (glob.glob(self._path(f"ckpt-{iteration}.*"))
                     + glob.glob(self._path(f"ckpt-{iteration}_temp*"))
                     + glob.glob(self._sampler_path(iteration) + "*")):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
