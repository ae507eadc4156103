"""The audit step kinds, one module each; they reach the runner through the ``curate.steps`` entry
points (``audits.steps:AuditStep``...), and curate's core never imports them."""

from audits.steps.audit import AuditStep
from audits.steps.audit_apply import AuditApplyStep
from audits.steps.image_quality import ImageQualityStep

__all__ = ["AuditApplyStep", "AuditStep", "ImageQualityStep"]
