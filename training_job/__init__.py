"""The training job: features, NeuMF training, tuning, evaluation, baselines, gate, report.

Runs as ``python -m training_job {train,benchmark,make-ncf-split}``. Torch lives here and only here;
the artifact it produces is read by :mod:`movierec.artifact` with numpy alone.
"""

import os

# On a shared machine, OpenMP threads spinning at barriers steal the CPU from the thread doing the
# work: two spinning threads trained ~10x slower than one here under load; sleeping ones did not.
# libgomp reads this when torch loads it, so it is set before anything imports torch; an operator's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
