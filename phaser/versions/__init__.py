"""Policy versions, shared by the router (``services.policy_swap``) and the
trainer (``policy_trainer``): the checkpoint store (``store``), the canary and
probation guards (``guard``) and the per-version report (``report``)."""
