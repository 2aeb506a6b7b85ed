"""Test helpers: a recording channel adapter and message builders."""
