"""Looking things up without a run: the guard at any instant, explain, recorded runs, reports."""
