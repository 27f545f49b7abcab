"""Many runs at once: batches into a resumable store, BIDS derivatives and provenance."""
