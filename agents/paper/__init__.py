"""Paper mode: a trained run trades a replayed feed through the env's kernel, with a crash-safe ledger."""
