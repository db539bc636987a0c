"""AI trading signals: the direction rule, staleness on the venue's clock, the signal log, and the training pipeline."""
