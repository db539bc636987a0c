"""Tests of the pure trading domain core (no database)."""
