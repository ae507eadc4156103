"""The published budgets of each method, and the mark of a run that falls short of them.

The budgets are those of the official code behind the published tables: outer iterations
(``VICO-UoE/DatasetCondensation`` ``main.py --Iteration 1000`` for DC and DSA,
``main_DM.py --Iteration 20000`` for DM, ``Saehyung-Lee/DCC`` ``main.py --outer_loop 1000``)
and evaluation epochs (``epoch_eval_train``: 300 without augmentation, 1000 whenever the
evaluation trains with DSA; ``main_DM.py`` keeps 1000 even with DSA off). The scripts use the
same budgets at every IPC, so the table is per method. SRe2L's are its CIFAR(-100) scripts'
(``VILA-Lab/SRe2L`` ``SRe2L/*small_dataset/recover_cifar.sh``: 1,000 recover iterations per
class batch; ``relabel_cifar.sh``: 400 student epochs under KD). CDA published no CIFAR
setting; its smallest images are Tiny-ImageNet's (``CDA/README.md``: ``--iteration 4000``),
relabeled as SRe2L's (400 epochs). A run with fewer iterations or evaluation epochs is a
"shortened protocol", and the condense step, its figures and the benchmark say so.
Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Outer iterations of distillation, and epochs of each evaluation network's training."""

    iterations: int
    eval_epochs: int


PROTOCOL_EPOCHS = {True: 1000, False: 300}  # evaluation epochs with / without DSA augmentation
PAPER_BUDGETS: dict[str, Budget] = {
    "dc": Budget(iterations=1000, eval_epochs=PROTOCOL_EPOCHS[False]),
    "dsa": Budget(iterations=1000, eval_epochs=PROTOCOL_EPOCHS[True]),
    "dcc": Budget(iterations=1000, eval_epochs=PROTOCOL_EPOCHS[False]),
    "dm": Budget(iterations=20000, eval_epochs=PROTOCOL_EPOCHS[True]),
    "sre2l": Budget(iterations=1000, eval_epochs=400),
    "cda": Budget(iterations=4000, eval_epochs=400),
}
SHORTENED = "shortened protocol"


def paper_budget(method: str, *, eval_dsa: bool) -> Budget | None:
    """The published budget of ``method`` evaluated with or without DSA (None: no published budget on record)."""
    budget = PAPER_BUDGETS.get(method)
    if budget is None or not eval_dsa:
        return budget
    return Budget(iterations=budget.iterations, eval_epochs=max(budget.eval_epochs, PROTOCOL_EPOCHS[True]))


def shortfall(method: str, *, iterations: int, eval_epochs: int | None, eval_dsa: bool) -> str | None:
    """``"shortened protocol: ..."`` naming each budget the run falls short of, or None when it meets them.

    ``eval_epochs`` None means the run was not evaluated (only the iterations count). A
    method without a published budget is never marked.
    """
    budget = paper_budget(method, eval_dsa=eval_dsa)
    if budget is None:
        return None
    short = []
    if iterations < budget.iterations:
        short.append(f"{iterations:,} of {budget.iterations:,} iterations")
    if eval_epochs is not None and eval_epochs < budget.eval_epochs:
        short.append(f"{eval_epochs:,} of {budget.eval_epochs:,} evaluation epochs")
    return f"{SHORTENED}: {', '.join(short)}" if short else None
