#!/bin/sh
# Figure 4's comparison on cart-pole and Swimmer: every method of section 8.1, 3 seeds each,
# scaled down for 2 CPU cores (launch/paper/figure4_quick/*.cfg), then the figure. Re-running
# resumes: finished runs are skipped. The full-size set is launch/paper/figure4/*.cfg (5 seeds).
set -e
for flagfile in launch/paper/figure4_quick/*.cfg; do
    echo "== $flagfile"
    python -m trpo_tf.launch --flagfile="$flagfile" --quiet
done
python -m trpo_tf.plot --logdir=runs/figure4_quick --out=docs/figure4_quick.png,docs/figure4_quick.svg \
    --title="Figure 4, scaled down: mean training return over 3 seeds (band: 1 std)"
