"""Market data: instruments, exchange rules and calendars, bar sources, loading and querying bars."""
