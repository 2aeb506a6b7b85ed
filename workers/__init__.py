"""Job functions run by RQ workers (or in-process in embedded mode). They take ids, never objects."""
