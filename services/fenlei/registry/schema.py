"""The registry's schema: the steps of its migrations (fenlei.runtime.db runs them)."""

from __future__ import annotations

from fenlei.runtime.db import Migrations

# Each step moves the schema one version up, in one transaction with the version bump.
MIGRATIONS: Migrations = (
    (
        # The highest version number a model ever had: numbers are never given twice, so a
        # stage's cache of a deleted version can never be mistaken for a new one.
        "CREATE TABLE models (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL)",
        """CREATE TABLE versions (
            name TEXT NOT NULL REFERENCES models(name),
            number INTEGER NOT NULL,
            created REAL NOT NULL,
            created_by TEXT NOT NULL,
            lineage TEXT NOT NULL,  -- JSON of fenlei.v1.Lineage, by field name
            metrics TEXT NOT NULL,  -- JSON of fenlei.v1.Metrics, by field name
            labels TEXT NOT NULL,  -- JSON list
            digest TEXT NOT NULL,  -- SHA-256 over the files' paths and checksums
            size_bytes INTEGER NOT NULL,
            PRIMARY KEY (name, number))""",
        """CREATE TABLE files (
            name TEXT NOT NULL,
            number INTEGER NOT NULL,
            path TEXT NOT NULL,  -- relative to the version's directory
            sha256 TEXT NOT NULL,  -- its blob in <home>/artifacts/sha256
            size INTEGER NOT NULL,
            PRIMARY KEY (name, number, path),
            FOREIGN KEY (name, number) REFERENCES versions(name, number) ON DELETE CASCADE)""",
        "CREATE INDEX files_by_blob ON files(sha256)",
        """CREATE TABLE tags (
            name TEXT NOT NULL,
            number INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (name, number, key),
            FOREIGN KEY (name, number) REFERENCES versions(name, number) ON DELETE CASCADE)""",
        # No cascade: a version an alias points at is never deleted.
        """CREATE TABLE aliases (
            name TEXT NOT NULL,
            alias TEXT NOT NULL,
            number INTEGER NOT NULL,
            PRIMARY KEY (name, alias),
            FOREIGN KEY (name, number) REFERENCES versions(name, number))""",
        # Every move of every alias, kept when versions go; from/to '' for a creation/removal.
        """CREATE TABLE alias_moves (
            name TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            alias TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            moved_by TEXT NOT NULL,
            moved REAL NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (name, sequence))""",
        """CREATE TABLE experiments (
            name TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            allocation TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            created_by TEXT NOT NULL,
            ended REAL,
            revision INTEGER NOT NULL DEFAULT 1)""",
        "CREATE UNIQUE INDEX experiments_running ON experiments(model) WHERE ended IS NULL",
        """CREATE TABLE arms (
            experiment TEXT NOT NULL REFERENCES experiments(name),
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            target TEXT NOT NULL,
            weight REAL NOT NULL,
            PRIMARY KEY (experiment, name))""",
        """CREATE TABLE assignments (
            experiment TEXT NOT NULL,
            key TEXT NOT NULL,
            arm TEXT NOT NULL,
            assigned REAL NOT NULL,
            PRIMARY KEY (experiment, key))""",
        """CREATE TABLE predictions (
            request_id TEXT NOT NULL,
            document_id TEXT NOT NULL,
            experiment TEXT NOT NULL,
            arm TEXT NOT NULL,
            version TEXT NOT NULL,
            label TEXT NOT NULL,
            served REAL NOT NULL,
            true_label TEXT,
            feedback_at REAL,
            PRIMARY KEY (request_id, document_id))""",
        # An experiment's scores read only this (covering) index, not every prediction's row.
        "CREATE INDEX predictions_scores ON predictions(experiment, arm, true_label, label)",
        """CREATE TABLE experiment_events (
            experiment TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            at REAL NOT NULL,
            by TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            PRIMARY KEY (experiment, sequence))""",
    ),
    (
        # The full report of the training that made a version (JSON of fenlei.v1.TrainingReport, by
        # field name); {} for versions registered before reports, or without one.
        "ALTER TABLE versions ADD COLUMN report TEXT NOT NULL DEFAULT '{}'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
