"""Machine learning on market bars: features, labels, walk-forward splits, datasets, AutoML, backtests, export."""
