"""The synthetic data generator: borrowers and their records for any source kind, seeded."""
