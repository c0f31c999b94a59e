"""The natural policy gradient (section 7, after eq. 18): TRPO's direction A^-1 g taken with a
fixed step, theta += npg_step * A^-1 g, without trust region or line search."""
from trpo_tf.methods.trpo import TRPO
from trpo_tf.settings import declare, positive

GROUP = "4 method natural_gradient"
declare(GROUP, "npg_step", 0.1,
        "natural_gradient: fixed step theta += npg_step * A^-1 g (the paper swept it by factors "
        "of 3: trpo_tf.sweep).", check=positive, rule="> 0")


class NaturalGradient(TRPO):
    algo = "natural_gradient"
    setting_groups = (*TRPO.setting_groups, GROUP)
    unread_settings = ("max_kl", "max_kl_end", "ls_shrink", "ls_max_backtracks")  # a fixed step
    tuned_presets = False
    search_space = {}
    tags = {k: v for k, v in TRPO.tags.items()  # no line search
            if k not in ("linesearch_steps", "step_accepted")}

    def learner_options(self):
        return {"fixed_step": self.cfg.npg_step}
