"""SQLAlchemy sinks: batches written in one transaction before offsets are committed."""
