"""Output a user reads: the run, its progress and its result, not the libraries' remarks on our own use of them.

Called by the command line and grid workers (never on import, so a library user's logging stays theirs).
Warnings about the user's input or environment (a dataset falling back to a download, a missing GPU) are
not ours to hide and stay.
"""

import logging
import warnings

# Each is about how attnplace drives Lightning, which the user cannot act on.
OUR_OWN_USE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's pytree helper on newer torch
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # short epochs, by design
    r"Checkpoint directory .* exists and is not empty",  # our run dir holds last.ckpt on purpose (resume)
    r"Experiment logs directory .* exists and is not empty",  # a resume keeps metrics.csv's rows (csv_log.py)
)
# Lightning's start-up banner (GPU/TPU available, tips) and "fit stopped: max_epochs reached" lines.
CHATTY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.pytorch.accelerators.cuda")


def quiet_libraries() -> None:
    for message in OUR_OWN_USE:
        warnings.filterwarnings("ignore", message=message)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
