"""Recipe step kinds. Each kind is registered in :data:`STEPS` through the ``curate.steps`` entry points."""

from curate.steps.base import STEPS, Input, Role, Step, StepContext, create_step

__all__ = ["STEPS", "Input", "Role", "Step", "StepContext", "create_step"]
