"""Adapters from raw social-media files to the canonical tables (see ``apps.social.schema``)."""
from .api import ENGINES, ingest
from .common import CanonicalWriter, IngestStats, Reject, RowError, parse_time
from .run import FORMATS, detect_format, ingest_file, iter_lines, load_labels
from .source import InputError, TruncatedInput

__all__ = ["ingest", "ENGINES", "ingest_file", "detect_format", "iter_lines", "load_labels", "FORMATS",
           "CanonicalWriter", "IngestStats", "InputError", "TruncatedInput", "Reject", "RowError", "parse_time"]
