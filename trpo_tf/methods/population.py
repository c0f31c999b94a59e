"""What the derivative-free methods of section 8.1 share (cem.py, cma.py): they search the
parameters of the action mean directly (the log-std plays no part: candidates act by their
mean or argmax) and score each candidate by the return of one episode
(sampling/population.py plays them)."""
import time

from trpo_tf.methods.base import Method, timed
from trpo_tf.settings import at_least, declare

GROUP = "4 method cem / cma"
declare(GROUP, "population", 20,
        "cem / cma: candidates per iteration, one episode each.", check=at_least(2), rule=">= 2")


class PopulationMethod(Method):
    backend = "gymnasium"  # one whole episode per candidate, env by env
    stages, _stage_tags = timed(("update", "time_update"))
    tags = {**_stage_tags, "search_spread": "Search/Spread"}  # CEM: the search's mean std; CMA: sigma

    @classmethod
    def validate(cls, cfg):
        if cfg.env_backend == "envpool":
            return (f"--algo={cls.algo} plays one episode per candidate on gymnasium envs: use "
                    "--env_backend=gymnasium or auto")
        if cfg.workers > cfg.population:
            return (f"--workers={cfg.workers} play --population={cfg.population} candidates: "
                    "each needs at least one")
        return None

    @classmethod
    def check_env(cls, spec):
        from trpo_tf.errors import EnvError

        if spec.atari is not None:
            raise EnvError(f"--algo={cls.algo} searches MLP / linear policies; {spec.gym_id}'s "
                           "CNN is trained by --algo=trpo (or an ablation, or rwr)")

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf.pipeline import population_signature
        from trpo_tf.sampling.population import PopulationSearch
        from trpo_tf.flat import get_flat

        self.signature = population_signature()
        start = get_flat(parts.policy.mean_variables()).numpy()
        self.sampler = PopulationSearch(parts.envs, parts.policy, self.make_search(start),
                                        cfg.population, parts.seeds["search_episodes"])

    @classmethod
    def make_sampler(cls, cfg, envs, dist, seeds, policy):
        """A Ray worker's: it plays the candidates the learner's PopulationSearch sends it."""
        from trpo_tf.sampling.population import CandidatePlayer

        return CandidatePlayer(envs, policy)

    def sample_on(self, workers):
        """The search asks and is told here; the workers play the candidates."""
        self.sampler.play = workers.play_candidates
        return self.sampler

    def make_search(self, start):
        """The search over parameter vectors, centred on `start`: .ask(n), .tell(candidates,
        returns), .mean, .spread."""
        raise NotImplementedError

    def sampling_line(self, cfg):
        return f"{cfg.population} candidates x 1 episode per iteration"

    def progress(self, m):
        return f"spread {m['search_spread']:.3f}"

    def update(self, batch):
        """Tell the search the candidates' returns; the policy becomes its mean."""
        from trpo_tf.methods.update import all_finite

        if not all_finite(batch["returns"]):
            return None, "returns"
        t0 = time.perf_counter()
        self.sampler.tell(batch["returns"].numpy())
        return {"time_update": time.perf_counter() - t0, "search_spread": self.sampler.optimizer.spread}, None
