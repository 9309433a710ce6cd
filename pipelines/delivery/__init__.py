"""SFTP delivery: pinned host keys, atomic uploads, the ledger and journal, OpenPGP."""
