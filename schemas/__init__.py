"""The Avro schemas (`*.avsc` beside this file): the single source of every message type."""
from importlib.resources import files

SCHEMA_DIR = files(__name__)
