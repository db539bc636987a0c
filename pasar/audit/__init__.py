"""The append-only audit log: every state change of every domain writes an event here."""
