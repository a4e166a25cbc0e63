# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Q-Face data layer: one example schema, and adapters reading each benchmark as its owners distribute it.

    from modeling_qface.training.data import load_source
    train = load_source("raf_db", "/data/RAF-DB/basic", "train")              # a datasets.Dataset, cached
    bp4d_test = load_source("bp4d", "/data/BP4D", "test", fold=2)

Every source yields exactly `FEATURES` (see `schema.py`), so `datasets.concatenate_datasets` works across sources.
"""

from .errors import DataFormatError, LoadReport
from .loading import (
    FORMAT_VERSION,
    SOURCES,
    build_adapter,
    holds_test_rows,
    load_source,
    prepare_source,
    read_rows,
    source_problems,
)
from .schema import FEATURES, LABEL_COLUMNS, MISSING, au_vector, check_row, empty_row, qface_features
from .splits import BP4D_PARTS, DISFA_PARTS, FOLD_TEST_PART, carve, fold_subjects

__all__ = [
    "BP4D_PARTS",
    "DISFA_PARTS",
    "FEATURES",
    "FOLD_TEST_PART",
    "FORMAT_VERSION",
    "LABEL_COLUMNS",
    "MISSING",
    "SOURCES",
    "DataFormatError",
    "LoadReport",
    "au_vector",
    "build_adapter",
    "carve",
    "check_row",
    "empty_row",
    "fold_subjects",
    "holds_test_rows",
    "load_source",
    "prepare_source",
    "qface_features",
    "read_rows",
    "source_problems",
]
