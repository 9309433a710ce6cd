"""Typed configs, run requests, the vocabulary, the source table layout and the errors: no IO."""
