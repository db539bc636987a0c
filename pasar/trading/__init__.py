"""Trading engine domain core: orders, pre-trade risk, fees, positions, ledger and paper matching (pure)."""
