"""The online trainer service, the checkpoint store and the policy lifecycle (issue 7)."""
