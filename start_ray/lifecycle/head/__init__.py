"""Rank 0's part: bring-up, the watch, the teardown, over one state object and its ledger."""
