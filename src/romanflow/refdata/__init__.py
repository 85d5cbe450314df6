"""Reference data: contexts, best-reference selection and the embedded store.

>>> from romanflow.refdata import ReferenceStore, select_reference
>>> store = ReferenceStore(science_size=248)                  # doctest: +SKIP
>>> select_reference("flat", meta, context=store)              # doctest: +SKIP
"""

from romanflow.refdata.context import PARKEYS, Context
from romanflow.refdata.selection import best_references, check_reference_file, select, select_reference
from romanflow.refdata.store import CONTEXT_NAME, ReferenceStore, default_store

__all__ = [
    "CONTEXT_NAME",
    "PARKEYS",
    "Context",
    "ReferenceStore",
    "best_references",
    "check_reference_file",
    "default_store",
    "select",
    "select_reference",
]
