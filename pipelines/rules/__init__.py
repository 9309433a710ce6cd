"""Compliance rules, each written once (COMPLIANCE.md). The batch screen, the next eligible date,
`explain` and `check` all read a rule's definition from here, so they cannot disagree about it."""
